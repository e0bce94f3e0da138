/**
 * Raw HTTP/1.1 over `node:net`, so the suite can send handshakes that `fetch` refuses to send
 * (its own `Connection` and `Upgrade` headers) and read the whole answer: status, headers, body.
 * @module
 */
import { connect, type Socket } from 'node:net'

/** A whole HTTP answer. */
export interface HttpAnswer {
  status: number
  /** The status line as sent, such as `HTTP/1.1 403 Forbidden`; absent in memory. */
  statusLine?: string
  headers: Headers
  body: string
}

/** A request to send as is. */
export interface RawRequest {
  /** @defaultValue 'GET' */
  method?: string
  /** The headers, sent as given. `Host` is added when absent. */
  headers?: Record<string, string>
  /**
   * Read the body until the server ends the connection, whatever `Content-Length` says: the
   * answer then proves the server closed the connection and sent nothing after the body.
   * @defaultValue false
   */
  readToEnd?: boolean
}

/** The response head, and the bytes that followed it in the same reads. */
export interface ResponseHead {
  status: number
  /** The status line as sent. */
  statusLine: string
  headers: Headers
  rest: Buffer
}

/** The headers of a valid opening handshake (RFC 6455 §4.1), with a fixed, valid key. */
export function handshakeHeaders(key = 'dGhlIHNhbXBsZSBub25jZQ=='): Record<string, string> {
  return {
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': key,
    'Sec-WebSocket-Version': '13',
  }
}

/** Opens a TCP connection to the host and port of `baseUrl` (`http://127.0.0.1:PORT`). */
export function openSocket(baseUrl: string): Promise<Socket> {
  const url = new URL(baseUrl)
  return new Promise((resolve, reject) => {
    const socket = connect({ host: url.hostname, port: Number(url.port || 80) })
    socket.once('connect', () => {
      socket.off('error', reject)
      resolve(socket)
    })
    socket.once('error', reject)
  })
}

/** Writes a request head. */
export function writeRequest(socket: Socket, baseUrl: string, path: string, request: RawRequest) {
  const headers = { ...request.headers }
  if (!Object.keys(headers).some((name) => name.toLowerCase() === 'host')) {
    headers.Host = new URL(baseUrl).host
  }
  const lines = [`${request.method ?? 'GET'} ${path} HTTP/1.1`]
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`)
  socket.write(`${lines.join('\r\n')}\r\n\r\n`)
}

/** Reads the response head. */
export function readHead(socket: Socket): Promise<ResponseHead> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0)
    const cleanup = () => {
      // Hold the bytes after the head until the next reader listens.
      socket.pause()
      socket.off('data', onData)
      socket.off('close', onClose)
      socket.off('error', onError)
    }
    const onError = (err: Error) => {
      cleanup()
      reject(err)
    }
    const onClose = () => {
      cleanup()
      reject(new Error('The connection closed before the response head'))
    }
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      const end = buffered.indexOf('\r\n\r\n')
      if (end === -1) return
      cleanup()
      const [statusLine = '', ...lines] = buffered.subarray(0, end).toString('latin1').split('\r\n')
      const status = Number(statusLine.split(' ')[1])
      const headers = new Headers()
      for (const line of lines) {
        const colon = line.indexOf(':')
        if (colon > 0) headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim())
      }
      resolve({ status, statusLine, headers, rest: buffered.subarray(end + 4) })
    }
    socket.on('data', onData)
    socket.once('close', onClose)
    socket.once('error', onError)
  })
}

/**
 * Reads the body after a head: by `Content-Length`, chunked, or until the connection ends
 * (always so with `toEnd`).
 */
export function readBody(socket: Socket, head: ResponseHead, toEnd = false): Promise<string> {
  const length = toEnd ? null : head.headers.get('content-length')
  const chunked = !toEnd && head.headers.get('transfer-encoding')?.toLowerCase().includes('chunked')
  return new Promise((resolve, reject) => {
    let buffered = head.rest
    const finish = (body: Buffer) => {
      socket.off('data', onData)
      socket.off('close', onClose)
      resolve(body.toString('utf8'))
    }
    const tryFinish = () => {
      if (length !== null && buffered.byteLength >= Number(length)) {
        finish(buffered.subarray(0, Number(length)))
      } else if (chunked) {
        const body = dechunk(buffered)
        if (body) finish(body)
      }
    }
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      tryFinish()
    }
    const onClose = () => {
      socket.off('data', onData)
      if (length === null && !chunked) resolve(buffered.toString('utf8'))
      else reject(new Error(`The connection closed mid-body: ${buffered.toString('utf8')}`))
    }
    socket.on('data', onData)
    socket.once('close', onClose)
    socket.resume()
    tryFinish()
  })
}

/** Decodes a chunked body; undefined while it is incomplete. */
function dechunk(bytes: Buffer): Buffer | undefined {
  const parts: Buffer[] = []
  let offset = 0
  for (;;) {
    const lineEnd = bytes.indexOf('\r\n', offset)
    if (lineEnd === -1) return undefined
    const size = Number.parseInt(bytes.subarray(offset, lineEnd).toString('latin1'), 16)
    if (Number.isNaN(size)) return undefined
    const start = lineEnd + 2
    if (size === 0) return Buffer.concat(parts)
    if (bytes.byteLength < start + size + 2) return undefined
    parts.push(bytes.subarray(start, start + size))
    offset = start + size + 2
  }
}

/**
 * Sends one request exactly as given and reads the whole answer. A 101 answer is returned at
 * its head, and the connection is dropped.
 */
export async function rawRequest(
  baseUrl: string,
  path: string,
  request: RawRequest = {},
): Promise<HttpAnswer> {
  const socket = await openSocket(baseUrl)
  socket.on('error', () => {})
  try {
    const head = readHead(socket)
    writeRequest(socket, baseUrl, path, request)
    const answer = await head
    const body = answer.status === 101 ? '' : await readBody(socket, answer, request.readToEnd)
    return { status: answer.status, statusLine: answer.statusLine, headers: answer.headers, body }
  } finally {
    socket.destroy()
  }
}
