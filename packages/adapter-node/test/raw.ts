/**
 * A minimal raw TCP WebSocket peer for the Node-specific tests: it writes the handshake itself,
 * so it can read a refusal byte for byte, stop reading, flood, or never answer a close frame.
 * @module
 */
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'

/** A handshake request, as a client would write it. */
export function handshake(path: string, port: number, extra: Record<string, string> = {}): string {
  const headers: Record<string, string> = {
    Host: `127.0.0.1:${port}`,
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
    'Sec-WebSocket-Version': '13',
    ...extra,
  }
  const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}`)
  return `GET ${path} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`
}

/** Opens a TCP connection to the test server. */
export async function dial(port: number): Promise<Socket> {
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  return socket
}

/** Sends `request` and reads until the server closes the connection: the whole response. */
export async function exchange(port: number, request: string): Promise<string> {
  const socket = await dial(port)
  const chunks: Buffer[] = []
  socket.on('data', (chunk) => chunks.push(chunk))
  socket.write(request)
  await once(socket, 'close')
  return Buffer.concat(chunks).toString('latin1')
}

/** A parsed HTTP/1.1 response. */
export interface RawResponse {
  status: number
  headers: Map<string, string>
  body: string
}

/** Parses a whole HTTP/1.1 response with a Content-Length. */
export function parseResponse(text: string): RawResponse {
  const end = text.indexOf('\r\n\r\n')
  const [statusLine = '', ...lines] = text.slice(0, end).split('\r\n')
  const headers = new Map<string, string>()
  for (const line of lines) {
    const colon = line.indexOf(':')
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim())
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body: text.slice(end + 4) }
}

/**
 * Opens a WebSocket by hand. Resolves once the 101 arrived, with the socket and the bytes that
 * came after the 101's headers. Data listeners are removed: the caller reads as it likes.
 */
export async function openRaw(
  port: number,
  path: string,
  extra?: Record<string, string>,
): Promise<{ socket: Socket; response: string; rest: Buffer }> {
  const socket = await dial(port)
  socket.write(handshake(path, port, extra))
  let buffered = Buffer.alloc(0)
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      const end = buffered.indexOf('\r\n\r\n')
      if (end < 0) return
      socket.off('data', onData)
      socket.off('close', onClose)
      socket.pause()
      const response = buffered.subarray(0, end).toString('latin1')
      if (!response.startsWith('HTTP/1.1 101')) {
        socket.destroy()
        reject(new Error(`Upgrade refused: ${response}`))
        return
      }
      resolve({ socket, response, rest: buffered.subarray(end + 4) })
    }
    const onClose = () => reject(new Error('The server closed the connection during the handshake'))
    socket.on('data', onData)
    socket.on('close', onClose)
  })
}

/**
 * A client frame: FIN set, masked with the all-zero key (valid, and it leaves the payload as
 * is, so a flood can reuse one buffer).
 */
export function clientFrame(opcode: number, payload: Uint8Array, masked = true): Buffer {
  const length = payload.byteLength
  const extended = length < 126 ? 0 : length < 65536 ? 2 : 8
  const header = Buffer.alloc(2 + extended + (masked ? 4 : 0))
  header[0] = 0x80 | opcode
  const maskBit = masked ? 0x80 : 0
  if (extended === 0) header[1] = maskBit | length
  else if (extended === 2) {
    header[1] = maskBit | 126
    header.writeUInt16BE(length, 2)
  } else {
    header[1] = maskBit | 127
    header.writeBigUInt64BE(BigInt(length), 2)
  }
  return Buffer.concat([header, payload])
}

/** The code and reason of the first close frame in `bytes` (server frames are unmasked). */
export function findCloseFrame(bytes: Buffer): { code: number; reason: string } | undefined {
  let offset = 0
  while (offset + 2 <= bytes.length) {
    const opcode = (bytes[offset] as number) & 0x0f
    let length = (bytes[offset + 1] as number) & 0x7f
    let start = offset + 2
    if (length === 126) {
      length = bytes.readUInt16BE(start)
      start += 2
    } else if (length === 127) {
      length = Number(bytes.readBigUInt64BE(start))
      start += 8
    }
    if (start + length > bytes.length) return undefined
    if (opcode === 0x8) {
      const payload = bytes.subarray(start, start + length)
      if (payload.length < 2) return { code: 1005, reason: '' }
      return { code: payload.readUInt16BE(0), reason: payload.subarray(2).toString('utf8') }
    }
    offset = start + length
  }
  return undefined
}
