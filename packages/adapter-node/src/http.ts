/**
 * HTTP on the raw socket of an `upgrade` event: the web `Request` for the app, and its answer
 * written back whole when it is not a WebSocket.
 * @module
 */
import { type IncomingMessage, STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import type { TLSSocket } from 'node:tls'

/**
 * The web `Request` of an upgrade request. It has no body: Node hands the bytes after the
 * headers to the upgrade (they belong to the WebSocket), and a handshake is a GET anyway.
 * @throws TypeError when the request line or the Host header does not make a valid URL
 */
export function toRequest(incoming: IncomingMessage): Request {
  const target = incoming.url ?? '/'
  let url: URL
  if (/^https?:\/\//i.test(target)) {
    url = new URL(target)
  } else {
    const host = incoming.headers.host ?? 'localhost'
    // Concatenate rather than resolve against a base, so that `//evil/x` stays a path; a Host
    // or a target that would move the URL elsewhere is refused.
    if (!target.startsWith('/') || /[\s/?#@\\]/.test(host)) {
      throw new TypeError(`Invalid request target or Host header: ${target} (Host: ${host})`)
    }
    const scheme = (incoming.socket as TLSSocket).encrypted ? 'https' : 'http'
    url = new URL(`${scheme}://${host}${target}`)
  }
  const headers = new Headers()
  const raw = incoming.rawHeaders
  for (let i = 0; i + 1 < raw.length; i += 2) headers.append(raw[i] as string, raw[i + 1] as string)
  return new Request(url, { method: incoming.method ?? 'GET', headers })
}

// Framing is ours: the body is sent whole with its length, then the connection closes.
const SKIPPED_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length'])

/**
 * Writes `response` whole on a raw socket (status line, headers, body) and ends it. This is how
 * a refused upgrade, or any route's answer to an upgrade request, reaches the client: Node gives
 * no `ServerResponse` for an `upgrade` event.
 */
export async function writeResponse(
  socket: Duplex,
  response: Response,
  method: string,
): Promise<void> {
  const status = response.status
  const bodyless = method === 'HEAD' || status === 204 || status === 304
  let body: Uint8Array = new Uint8Array(0)
  if (bodyless) await response.body?.cancel()
  else if (response.body) body = new Uint8Array(await response.arrayBuffer())
  if (socket.destroyed) return

  const lines = [`HTTP/1.1 ${status} ${response.statusText || STATUS_CODES[status] || ''}`]
  for (const [name, value] of response.headers) {
    if (name === 'set-cookie' || SKIPPED_HEADERS.has(name)) continue
    lines.push(`${name}: ${value}`)
  }
  for (const cookie of response.headers.getSetCookie()) lines.push(`set-cookie: ${cookie}`)
  if (!bodyless) lines.push(`content-length: ${body.byteLength}`)
  else if (method === 'HEAD' && response.headers.has('content-length')) {
    lines.push(`content-length: ${response.headers.get('content-length')}`)
  }
  lines.push('connection: close', '', '')

  // Read and drop what the client still sends, so that closing the socket does not reset the
  // connection (a reset can discard the response before the client reads it).
  socket.resume()
  socket.end(Buffer.concat([Buffer.from(lines.join('\r\n'), 'latin1'), body]))
  // A client that never closes its side must not hold the socket open.
  const linger = setTimeout(() => socket.destroy(), 2000)
  socket.once('close', () => clearTimeout(linger))
}
