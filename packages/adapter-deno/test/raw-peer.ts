/**
 * A raw TCP WebSocket peer for the Deno-specific tests: it sees the exact 101 header lines, every
 * frame the server writes, and when the server ends the TCP connection, and it can misbehave.
 * @module
 */
import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'

/** A frame the server sent. */
export interface Frame {
  readonly opcode: number
  readonly payload: Buffer
}

/** What the peer saw of the server's close frame. */
export interface ServerClose {
  readonly code: number
  readonly reason: string
}

/** Options of {@link rawConnect}. */
export interface RawOptions {
  headers?: Record<string, string>
  /** Answer the server's close frame with the same code, as RFC 6455 asks. @defaultValue true */
  answerClose?: boolean
  /** Stop reading once the 101 is in, so the server's sends pile up. @defaultValue false */
  paused?: boolean
}

/** A connected raw peer. */
export interface RawPeer {
  readonly status: number
  /** The response header lines, in order, names lower-cased. */
  readonly headerLines: readonly (readonly [string, string])[]
  /** Values of one header, in order (several for Set-Cookie). */
  header(name: string): string[]
  /** The next data frame (text, binary or pong); close frames go to {@link RawPeer.closeFrame}. */
  nextFrame(timeoutMs?: number): Promise<Frame>
  /** Resolves with the server's close frame, once it arrives. */
  readonly closeFrame: Promise<ServerClose>
  /** Resolves with the time (Date.now()) the server ended the TCP connection. */
  readonly tcpEnded: Promise<number>
  /** Sends one masked frame (unmasked when `mask` is false). */
  sendFrame(opcode: number, payload: Uint8Array | string, mask?: boolean): void
  /** Sends a close frame with this code and reason. */
  sendClose(code: number, reason?: string): void
  /** Starts reading again after `paused`. */
  resume(): void
  /** Destroys the TCP connection without a close frame. */
  destroy(): void
}

/** Opcodes. */
export const Op = { text: 1, binary: 2, close: 8, ping: 9, pong: 10 } as const

function encode(opcode: number, data: Uint8Array | string, mask: boolean): Buffer {
  const payload = Buffer.from(typeof data === 'string' ? Buffer.from(data) : data)
  const length = payload.length
  const head =
    length < 126
      ? Buffer.from([0x80 | opcode, (mask ? 0x80 : 0) | length])
      : Buffer.from([0x80 | opcode, (mask ? 0x80 : 0) | 126, length >> 8, length & 0xff])
  if (length > 0xffff) throw new RangeError('raw peer frames stay under 64 KiB')
  if (!mask) return Buffer.concat([head, payload])
  const key = randomBytes(4)
  for (let i = 0; i < payload.length; i++)
    payload[i] = (payload[i] as number) ^ (key[i % 4] as number)
  return Buffer.concat([head, key, payload])
}

export function closePayload(code: number, reason = ''): Buffer {
  const head = Buffer.alloc(2)
  head.writeUInt16BE(code)
  return Buffer.concat([head, Buffer.from(reason)])
}

/** Opens a WebSocket connection over raw TCP and resolves once the 101 (or another status) is in. */
export function rawConnect(port: number, path: string, options: RawOptions = {}): Promise<RawPeer> {
  const answerClose = options.answerClose ?? true
  const socket: Socket = connect(port, '127.0.0.1')
  const extra = Object.entries(options.headers ?? {})
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('')
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`,
  )
  let buffer = Buffer.alloc(0)
  let upgraded = false
  let closeSent = false
  const frames: Frame[] = []
  const waiters: ((frame: Frame) => void)[] = []
  let settleClose: (close: ServerClose) => void = () => {}
  const closeFrame = new Promise<ServerClose>((resolve) => {
    settleClose = resolve
  })
  const tcpEnded = new Promise<number>((resolve) => {
    socket.on('close', () => resolve(Date.now()))
  })
  socket.on('error', () => {})

  return new Promise((resolve, reject) => {
    socket.on('close', () => {
      if (!upgraded) reject(new Error(`connection closed before the handshake answer: ${buffer}`))
    })
    const peer = (status: number, headerLines: [string, string][]): RawPeer => ({
      status,
      headerLines,
      header: (name) => headerLines.filter(([key]) => key === name.toLowerCase()).map(([, v]) => v),
      nextFrame(timeoutMs = 5000) {
        const frame = frames.shift()
        if (frame) return Promise.resolve(frame)
        return new Promise((resolveFrame, rejectFrame) => {
          const timer = setTimeout(() => rejectFrame(new Error('no frame in time')), timeoutMs)
          waiters.push((next) => {
            clearTimeout(timer)
            resolveFrame(next)
          })
        })
      },
      closeFrame,
      tcpEnded,
      sendFrame: (opcode, payload, mask = true) => socket.write(encode(opcode, payload, mask)),
      sendClose(code, reason = '') {
        closeSent = true
        socket.write(encode(Op.close, closePayload(code, reason), true))
      },
      resume: () => socket.resume(),
      destroy: () => socket.destroy(),
    })

    const parseFrames = () => {
      while (buffer.length >= 2) {
        const opcode = (buffer[0] as number) & 0x0f
        let length = (buffer[1] as number) & 0x7f
        let offset = 2
        if (length === 126) {
          if (buffer.length < 4) return
          length = buffer.readUInt16BE(2)
          offset = 4
        } else if (length === 127) {
          if (buffer.length < 10) return
          length = Number(buffer.readBigUInt64BE(2))
          offset = 10
        }
        if (buffer.length < offset + length) return
        const payload = Buffer.from(buffer.subarray(offset, offset + length))
        buffer = buffer.subarray(offset + length)
        if (opcode === Op.close) {
          const close =
            payload.length >= 2
              ? { code: payload.readUInt16BE(0), reason: payload.subarray(2).toString() }
              : { code: 1005, reason: '' }
          settleClose(close)
          if (answerClose && !closeSent) {
            closeSent = true
            socket.write(
              encode(
                Op.close,
                payload.length >= 2 ? closePayload(close.code) : Buffer.alloc(0),
                true,
              ),
            )
          }
          continue
        }
        const frame = { opcode, payload }
        const waiter = waiters.shift()
        if (waiter) waiter(frame)
        else frames.push(frame)
      }
    }

    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk])
      if (!upgraded) {
        const end = buffer.indexOf('\r\n\r\n')
        if (end < 0) return
        const [statusLine = '', ...lines] = buffer.subarray(0, end).toString().split('\r\n')
        buffer = buffer.subarray(end + 4)
        upgraded = true
        const headerLines = lines.map((line): [string, string] => {
          const colon = line.indexOf(':')
          return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()]
        })
        if (options.paused) socket.pause()
        resolve(peer(Number(statusLine.split(' ')[1]), headerLines))
      }
      parseFrames()
    })
  })
}
