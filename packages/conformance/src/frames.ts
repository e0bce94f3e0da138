/**
 * RFC 6455 §5 framing, just enough for a peer that must be able to break the rules: every field
 * of a frame can be set by hand, including the ones a correct client never gets wrong.
 * @see https://www.rfc-editor.org/rfc/rfc6455#section-5.2
 * @module
 */
import { randomBytes } from 'node:crypto'

/** The opcodes of RFC 6455 §5.2. */
export const Opcode = {
  Continuation: 0x0,
  Text: 0x1,
  Binary: 0x2,
  Close: 0x8,
  Ping: 0x9,
  Pong: 0xa,
} as const

/** One frame to write. Every field but `opcode` has the value a correct client would use. */
export interface FrameSpec {
  opcode: number
  payload?: Uint8Array
  /** @defaultValue true */
  fin?: boolean
  /** RSV1-3 as a 3-bit number. @defaultValue 0 */
  rsv?: number
  /** Clients must mask (RFC 6455 §5.3); false writes an unmasked frame. @defaultValue true */
  mask?: boolean
}

/** One frame read from the server. */
export interface Frame {
  fin: boolean
  opcode: number
  masked: boolean
  payload: Uint8Array
}

/** Encodes a frame. */
export function encodeFrame({
  opcode,
  payload = new Uint8Array(0),
  fin = true,
  rsv = 0,
  mask = true,
}: FrameSpec): Uint8Array {
  const length = payload.byteLength
  const lengthBytes = length < 126 ? 0 : length < 0x10000 ? 2 : 8
  const header = new Uint8Array(2 + lengthBytes + (mask ? 4 : 0))
  header[0] = (fin ? 0x80 : 0) | ((rsv & 0x7) << 4) | (opcode & 0x0f)
  const view = new DataView(header.buffer)
  if (lengthBytes === 0) header[1] = length
  else if (lengthBytes === 2) {
    header[1] = 126
    view.setUint16(2, length)
  } else {
    header[1] = 127
    view.setBigUint64(2, BigInt(length))
  }
  let body = payload
  if (mask) {
    header[1] = (header[1] as number) | 0x80
    const key = randomBytes(4)
    header.set(key, 2 + lengthBytes)
    body = new Uint8Array(length)
    for (let i = 0; i < length; i++) body[i] = (payload[i] as number) ^ (key[i & 3] as number)
  }
  const frame = new Uint8Array(header.byteLength + length)
  frame.set(header)
  frame.set(body, header.byteLength)
  return frame
}

/** The payload of a close frame: no code gives an empty payload. */
export function closePayload(code?: number, reason = ''): Uint8Array {
  if (code === undefined) return new Uint8Array(0)
  const text = new TextEncoder().encode(reason)
  const payload = new Uint8Array(2 + text.byteLength)
  new DataView(payload.buffer).setUint16(0, code)
  payload.set(text, 2)
  return payload
}

/** Reads a close frame's payload: 1005 when it has no code, as RFC 6455 §7.1.5 says. */
export function parseClosePayload(payload: Uint8Array): { code: number; reason: string } {
  if (payload.byteLength < 2) return { code: 1005, reason: '' }
  const code = new DataView(payload.buffer, payload.byteOffset).getUint16(0)
  return { code, reason: new TextDecoder().decode(payload.subarray(2)) }
}

/** An incremental frame decoder: feed it bytes, it returns the whole frames they complete. */
export class FrameDecoder {
  #buffer = new Uint8Array(0)

  /** Appends bytes and returns every frame now complete, in order. */
  push(chunk: Uint8Array): Frame[] {
    const joined = new Uint8Array(this.#buffer.byteLength + chunk.byteLength)
    joined.set(this.#buffer)
    joined.set(chunk, this.#buffer.byteLength)
    this.#buffer = joined
    const frames: Frame[] = []
    for (;;) {
      const frame = this.#next()
      if (!frame) return frames
      frames.push(frame)
    }
  }

  #next(): Frame | undefined {
    const bytes = this.#buffer
    if (bytes.byteLength < 2) return undefined
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    const first = bytes[0] as number
    const second = bytes[1] as number
    const masked = (second & 0x80) !== 0
    let length = second & 0x7f
    let offset = 2
    if (length === 126) {
      if (bytes.byteLength < 4) return undefined
      length = view.getUint16(2)
      offset = 4
    } else if (length === 127) {
      if (bytes.byteLength < 10) return undefined
      length = Number(view.getBigUint64(2))
      offset = 10
    }
    const keyOffset = offset
    if (masked) offset += 4
    if (bytes.byteLength < offset + length) return undefined
    const payload = bytes.slice(offset, offset + length)
    if (masked) {
      for (let i = 0; i < length; i++) {
        payload[i] = (payload[i] as number) ^ (bytes[keyOffset + (i & 3)] as number)
      }
    }
    this.#buffer = bytes.subarray(offset + length)
    return { fin: (first & 0x80) !== 0, opcode: first & 0x0f, masked, payload }
  }
}
