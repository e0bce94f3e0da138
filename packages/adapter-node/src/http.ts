/**
 * HTTP on the raw socket of an `upgrade` event: the web `Request` for the app, and its answer
 * written back when it is not a WebSocket.
 * @module
 */
import { type IncomingMessage, STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import type { TLSSocket } from 'node:tls'

/** The value of a header in Node's raw list (names in any case), or undefined. */
function rawHeader(raw: string[], name: string): string | undefined {
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const key = raw[i] as string
    if (key.length === name.length && key.toLowerCase() === name) return raw[i + 1]
  }
  return undefined
}

/**
 * The web `Request` of an upgrade request. It has no body: Node hands the bytes after the
 * headers to the upgrade (they belong to the WebSocket), and a handshake is a GET anyway. Its
 * `signal` aborts when the client goes away, so the app can stop its work.
 *
 * It is made lazily (see {@link UpgradeRequest}): the handshake and Hono's router read only its
 * `url`, `method` and `headers`, and a full `Request`, with its body state, its parsed URL and
 * two `AbortSignal`s, costs every connection about 2 KB and the upgrade several microseconds.
 * @throws TypeError when the request line or the Host header does not make a valid URL
 */
export function toRequest(incoming: IncomingMessage): Request {
  const target = incoming.url ?? '/'
  let url: string
  if (/^https?:\/\//i.test(target)) {
    url = new URL(target).href
  } else {
    // From the raw list: `incoming.headers` would make (and keep) Node's header object.
    const host = rawHeader(incoming.rawHeaders, 'host') ?? 'localhost'
    // Concatenate rather than resolve against a base, so that `//evil/x` stays a path; a Host
    // or a target that would move the URL elsewhere is refused.
    if (!target.startsWith('/') || /[\s/?#@\\]/.test(host)) {
      throw new TypeError(`Invalid request target or Host header: ${target} (Host: ${host})`)
    }
    const scheme = (incoming.socket as TLSSocket).encrypted ? 'https' : 'http'
    url = new URL(`${scheme}://${host}${target}`).href
  }
  return UpgradeRequest.of(incoming, url)
}

/**
 * A `Request` (`instanceof Request` holds) whose `url`, `method` and `headers` are read from the
 * `IncomingMessage`, and whose other members are those of a real `Request`, made the first time
 * one of them is used, with a signal that aborts when the client's socket closes.
 */
class UpgradeRequest {
  readonly #incoming: IncomingMessage
  readonly #url: string
  #headers: Headers | undefined
  #request: Request | undefined

  private constructor(incoming: IncomingMessage, url: string) {
    this.#incoming = incoming
    this.#url = url
  }

  static of(incoming: IncomingMessage, url: string): Request {
    // The global Request may be replaced after this module loads (@hono/node-server installs
    // its own subclass): follow it, so that `instanceof Request` holds for the one in use.
    const proto = globalThis.Request.prototype
    if (Object.getPrototypeOf(UpgradeRequest.prototype) !== proto) delegateTo(proto)
    return new UpgradeRequest(incoming, url) as unknown as Request
  }

  /** The real Request, made on first use. */
  static real(request: UpgradeRequest): Request {
    if (!request.#request) {
      const controller = new AbortController()
      const socket = request.#incoming.socket
      const abort = () => controller.abort(new Error('The client closed the connection'))
      // A client that closed its side is gone too, as Node's own HTTP server takes it (its end
      // shows once an answer is being written and the socket read).
      if (socket.destroyed || socket.readableEnded) abort()
      else {
        socket.once('close', abort)
        socket.once('end', abort)
      }
      request.#request = new Request(request.#url, {
        method: request.method,
        headers: request.headers,
        signal: controller.signal,
      })
    }
    return request.#request
  }

  get url(): string {
    return this.#url
  }

  get method(): string {
    return this.#incoming.method ?? 'GET'
  }

  get headers(): Headers {
    if (!this.#headers) {
      const headers = new Headers()
      const raw = this.#incoming.rawHeaders
      for (let i = 0; i + 1 < raw.length; i += 2) {
        headers.append(raw[i] as string, raw[i + 1] as string)
      }
      this.#headers = headers
    }
    return this.#headers
  }
}

const OWN = new Set<PropertyKey>(['constructor', 'url', 'method', 'headers'])

/** Chains the prototype to `proto`, and forwards its other members to the real Request. */
function delegateTo(proto: object): void {
  Object.setPrototypeOf(UpgradeRequest.prototype, proto)
  for (let p: object | null = proto; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const key of Reflect.ownKeys(p)) {
      if (OWN.has(key) || Object.hasOwn(UpgradeRequest.prototype, key)) continue
      const descriptor = Object.getOwnPropertyDescriptor(p, key) as PropertyDescriptor
      if (descriptor.get) {
        Object.defineProperty(UpgradeRequest.prototype, key, {
          configurable: true,
          get(this: UpgradeRequest) {
            return Reflect.get(UpgradeRequest.real(this), key)
          },
        })
      } else if (typeof descriptor.value === 'function') {
        Object.defineProperty(UpgradeRequest.prototype, key, {
          configurable: true,
          writable: true,
          value(this: UpgradeRequest, ...args: unknown[]) {
            const real = UpgradeRequest.real(this)
            const method = Reflect.get(real, key) as (...args: unknown[]) => unknown
            return method.apply(real, args)
          },
        })
      }
    }
  }
}

// Framing is ours: a length or chunks, then the connection closes.
const SKIPPED_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length'])

/** The most bytes of a ready body that are sent with a length; past them the body streams. */
const READ_AHEAD_BYTES = 64 * 1024

const NEXT_TURN = Symbol('next turn')
const nextTurn = () => new Promise<typeof NEXT_TURN>((resolve) => setImmediate(resolve, NEXT_TURN))
const ignore = () => {}

/** Resolves when the socket can take more, or has closed. */
function writable(socket: Duplex): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      socket.off('drain', done)
      socket.off('close', done)
      resolve()
    }
    socket.on('drain', done)
    socket.on('close', done)
  })
}

const chunk = (bytes: Uint8Array) =>
  Buffer.concat([Buffer.from(`${bytes.byteLength.toString(16)}\r\n`), bytes, Buffer.from('\r\n')])

/**
 * Writes `response` on a raw socket (status line, headers, body) and ends it. This is how a
 * refused upgrade, or any route's answer to an upgrade request, reaches the client: Node gives
 * no `ServerResponse` for an `upgrade` event.
 *
 * What the body has ready at once (up to 64 KiB: a refusal, a JSON answer) goes out with its
 * `Content-Length`; a body still being produced (a stream of events, a large download) is sent
 * in chunks as it comes, at the pace the client reads, and cancelled when the client leaves.
 */
export async function writeResponse(
  socket: Duplex,
  response: Response,
  method: string,
): Promise<void> {
  const status = response.status
  const bodyless = method === 'HEAD' || status === 204 || status === 304
  const reader = bodyless ? undefined : response.body?.getReader()
  if (bodyless) await response.body?.cancel().catch(ignore)

  const ready: Uint8Array[] = []
  let readyBytes = 0
  let ended = reader === undefined
  let next = reader?.read()
  next?.catch(ignore)
  while (next && readyBytes <= READ_AHEAD_BYTES) {
    const result = await Promise.race([next, nextTurn()])
    if (result === NEXT_TURN) break
    if (result.done) {
      ended = true
      break
    }
    ready.push(result.value)
    readyBytes += result.value.byteLength
    next = reader?.read()
    next?.catch(ignore)
  }
  if (socket.destroyed) {
    await reader?.cancel().catch(ignore)
    return
  }

  const lines = [`HTTP/1.1 ${status} ${response.statusText || STATUS_CODES[status] || ''}`]
  for (const [name, value] of response.headers) {
    if (name === 'set-cookie' || SKIPPED_HEADERS.has(name)) continue
    lines.push(`${name}: ${value}`)
  }
  for (const cookie of response.headers.getSetCookie()) lines.push(`set-cookie: ${cookie}`)
  if (!bodyless) lines.push(ended ? `content-length: ${readyBytes}` : 'transfer-encoding: chunked')
  else if (method === 'HEAD' && response.headers.has('content-length')) {
    lines.push(`content-length: ${response.headers.get('content-length')}`)
  }
  lines.push('connection: close', '', '')
  const head = Buffer.from(lines.join('\r\n'), 'latin1')

  // Read and drop what the client still sends, so that closing the socket does not reset the
  // connection (a reset can discard the response before the client reads it).
  socket.resume()
  if (ended) {
    socket.end(Buffer.concat([head, ...ready]))
  } else {
    await streamBody(socket, head, ready, reader as ReadableStreamDefaultReader<Uint8Array>, next)
  }
  // A client that never closes its side must not hold the socket open.
  const linger = setTimeout(() => socket.destroy(), 2000)
  socket.once('close', () => clearTimeout(linger))
}

/** Sends a body in chunks as the app produces it; cancels it when the client goes away. */
async function streamBody(
  socket: Duplex,
  head: Buffer,
  ready: Uint8Array[],
  reader: ReadableStreamDefaultReader<Uint8Array>,
  first: ReturnType<ReadableStreamDefaultReader<Uint8Array>['read']> | undefined,
): Promise<void> {
  // A client that closed its side is gone, as Node's own HTTP server takes it.
  const cancel = () => void reader.cancel().catch(ignore)
  socket.once('close', cancel)
  socket.once('end', cancel)
  try {
    socket.write(Buffer.concat([head, ...ready.filter((bytes) => bytes.byteLength > 0).map(chunk)]))
    let next = first
    while (next && !socket.destroyed) {
      const result = await next
      if (result.done) break
      if (result.value.byteLength > 0 && !socket.write(chunk(result.value))) await writable(socket)
      next = reader.read()
    }
    if (!socket.destroyed) socket.end('0\r\n\r\n')
  } catch {
    // The body failed half-way: the client must not take what it got for the whole.
    socket.destroy()
  } finally {
    socket.off('close', cancel)
    socket.off('end', cancel)
  }
}
