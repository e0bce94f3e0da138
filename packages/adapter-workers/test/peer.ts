/**
 * A raw WebSocket peer over TCP, for what a polite client cannot do: send a close frame with no
 * code, never answer the server's close frame, or vanish without one.
 * @module
 */
import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'

/** A frame read from the server. */
export interface ServerFrame {
  opcode: number
  payload: Buffer
}

/** A raw peer, connected and upgraded. */
export interface RawPeer {
  /** The raw 101 response head. */
  readonly head: string
  /** Every frame the server sent so far. */
  readonly frames: ServerFrame[]
  /** Resolves with the first frame that matches, or rejects after `timeoutMs`. */
  waitFor(match: (frame: ServerFrame) => boolean, timeoutMs?: number): Promise<ServerFrame>
  /** Sends one masked frame. */
  send(opcode: number, payload?: Uint8Array): void
  /** Sends one frame without the mask every client frame must carry (RFC 6455 §5.1). */
  sendUnmasked(opcode: number, payload: Uint8Array): void
  /** Sends a close frame: with no code when `code` is undefined. */
  close(code?: number, reason?: string): void
  /** Stops reading from TCP, so the server's data piles up in flight. */
  stopReading(): void
  /** Drops the TCP connection with no close frame. */
  vanish(): void
  /** Resolves once the TCP connection has ended, from either side. */
  readonly ended: Promise<void>
}

export const TEXT = 0x1
export const CLOSE = 0x8

function encode(opcode: number, payload: Uint8Array, masked = true): Buffer {
  if (payload.byteLength > 125) throw new RangeError('the raw peer only sends small frames')
  if (!masked) return Buffer.concat([Buffer.from([0x80 | opcode, payload.byteLength]), payload])
  const mask = randomBytes(4)
  const body = Buffer.from(payload.map((byte, i) => byte ^ (mask[i & 3] as number)))
  return Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | payload.byteLength]), mask, body])
}

/** Parses every whole unmasked server frame at the start of `buffer`. */
function decode(buffer: Buffer): { frames: ServerFrame[]; rest: Buffer } {
  const frames: ServerFrame[] = []
  let offset = 0
  for (;;) {
    if (buffer.byteLength - offset < 2) break
    let length = (buffer[offset + 1] as number) & 0x7f
    let start = offset + 2
    if (length === 126) {
      if (buffer.byteLength - offset < 4) break
      length = buffer.readUInt16BE(offset + 2)
      start = offset + 4
    } else if (length === 127) {
      if (buffer.byteLength - offset < 10) break
      length = Number(buffer.readBigUInt64BE(offset + 2))
      start = offset + 10
    }
    if (buffer.byteLength < start + length) break
    frames.push({
      opcode: (buffer[offset] as number) & 0x0f,
      payload: buffer.subarray(start, start + length),
    })
    offset = start + length
  }
  return { frames, rest: buffer.subarray(offset) }
}

/** Connects to `url` (http://127.0.0.1:PORT) and upgrades `path`. */
export async function rawPeer(url: string, path: string): Promise<RawPeer> {
  const { hostname, port, host } = new URL(url)
  const socket: Socket = connect(Number(port), hostname)
  const frames: ServerFrame[] = []
  const watchers = new Set<() => void>()
  let pending: Buffer = Buffer.alloc(0)
  let head = ''
  const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  socket.on('error', () => {})
  const upgraded = new Promise<void>((resolve, reject) => {
    socket.once('close', () => reject(new Error('closed before the upgrade')))
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk])
      if (!head) {
        const end = pending.indexOf('\r\n\r\n')
        if (end === -1) return
        head = pending.subarray(0, end).toString('latin1')
        pending = pending.subarray(end + 4)
        if (!head.startsWith('HTTP/1.1 101')) reject(new Error(`upgrade refused: ${head}`))
        else resolve()
      }
      const { frames: complete, rest } = decode(pending)
      pending = rest
      frames.push(...complete)
      for (const watcher of watchers) watcher()
    })
  })
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  )
  await upgraded
  const send = (opcode: number, payload: Uint8Array = new Uint8Array(0)) => {
    socket.write(encode(opcode, payload))
  }
  return {
    get head() {
      return head
    },
    frames,
    waitFor(match, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = frames.find(match)
          if (!found) return
          watchers.delete(check)
          clearTimeout(timer)
          resolve(found)
        }
        const timer = setTimeout(() => {
          watchers.delete(check)
          reject(new Error(`no matching frame within ${timeoutMs} ms`))
        }, timeoutMs)
        watchers.add(check)
        check()
      })
    },
    send,
    sendUnmasked(opcode, payload) {
      socket.write(encode(opcode, payload, false))
    },
    close(code, reason = '') {
      if (code === undefined) return send(CLOSE)
      const text = Buffer.from(reason)
      const payload = Buffer.alloc(2 + text.byteLength)
      payload.writeUInt16BE(code)
      text.copy(payload, 2)
      send(CLOSE, payload)
    },
    stopReading() {
      socket.pause()
    },
    vanish() {
      socket.destroy()
    },
    ended,
  }
}

/** The code and reason of a close frame's payload: 1005 when it has none. */
export function parseClose(frame: ServerFrame): { code: number; reason: string } {
  if (frame.payload.byteLength < 2) return { code: 1005, reason: '' }
  return { code: frame.payload.readUInt16BE(0), reason: frame.payload.subarray(2).toString() }
}
