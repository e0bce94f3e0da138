/**
 * What every adapter would otherwise write for itself, runtime-free: the 101's headers, a lazy
 * `Request` view, a web `Response` written on a raw byte stream, the answer to an upgrade that
 * the runtime completes after the app, and the glue of a server that is a hub.
 * @module
 */
import { DEFAULT_SHUTDOWN_TIMEOUT, type ShutdownOptions } from './connections.js'
import { createHub, type HandshakeServer, HUB, type Hub, type ServerAddress } from './hub.js'
import type { Adapter, UpgradeRequest } from './port.js'

// --- the 101 ---

/**
 * @internal The headers of every upgrade whose controller has no `upgradeHeaders`: one empty
 * `Headers`, shared, which the 101's builders skip without reading it.
 */
export const NO_UPGRADE_HEADERS: Headers = new Headers()

/**
 * The headers of the 101 for an upgrade: the controller's `upgradeHeaders`, and the chosen
 * subprotocol in `Sec-WebSocket-Protocol`.
 * @param request - the core's upgrade request
 * @param protocol - the subprotocol to echo; none when undefined
 * @param into - the headers to add them to (a runtime's own 101 response's)
 */
export function handshakeHeaders(
  request: UpgradeRequest,
  protocol: string | undefined = request.protocol,
  into: Headers = new Headers(),
): Headers {
  // forEach: an iterator costs a WebIDL iterator object per upgrade, even over no headers. The
  // shared empty headers of an upgrade without upgradeHeaders are not walked at all.
  if (request.headers !== NO_UPGRADE_HEADERS) {
    request.headers.forEach((value, name) => {
      into.append(name, value)
    })
  }
  if (protocol !== undefined) into.set('Sec-WebSocket-Protocol', protocol)
  return into
}

/**
 * {@link handshakeHeaders}, or undefined when there are none (no `upgradeHeaders`, no
 * subprotocol): most upgrades, for which a runtime then builds no header list at all.
 * @param request - the core's upgrade request
 * @param protocol - the subprotocol to echo; none when undefined
 */
export function handshakeHeadersIfAny(
  request: UpgradeRequest,
  protocol: string | undefined = request.protocol,
): Headers | undefined {
  let none = protocol === undefined
  if (none && request.headers !== NO_UPGRADE_HEADERS) {
    request.headers.forEach(() => {
      none = false
    })
  }
  return none ? undefined : handshakeHeaders(request, protocol)
}

/**
 * `name: value` lines of `headers` but those named in `skip`, with each `Set-Cookie` on a line
 * of its own, as a raw HTTP head writes them.
 */
export function headerLines(headers: Headers, skip: ReadonlySet<string>): string[] {
  const lines: string[] = []
  for (const [name, value] of headers) {
    if (name !== 'set-cookie' && !skip.has(name)) lines.push(`${name}: ${value}`)
  }
  for (const cookie of headers.getSetCookie()) lines.push(`set-cookie: ${cookie}`)
  return lines
}

// --- a lazy Request ---

/**
 * A `Request` (`instanceof Request` holds) whose `url`, `method` and `headers` are read from what
 * the runtime handed over, and whose other members are those of a real `Request`, made the first
 * time one of them is used. The handshake and Hono's router read only those three, and a full
 * `Request`, with its body state, its parsed URL and its signals, costs every connection about
 * 2 KB and the upgrade several microseconds. An adapter extends it with what its runtime gives,
 * and hands an instance to the app (`as unknown as Request`). It has no body, which an upgrade
 * never has.
 */
export abstract class RequestView {
  readonly #url: string
  #headers: Headers | undefined
  #request: Request | undefined

  /** @param url - the request's absolute URL */
  constructor(url: string) {
    // The global Request may be replaced after this module loads (@hono/node-server installs
    // its own subclass): follow it, so that `instanceof Request` holds for the one in use.
    const proto = globalThis.Request.prototype
    if (Object.getPrototypeOf(RequestView.prototype) !== proto) delegateTo(proto)
    this.#url = url
  }

  /** The request's method. */
  abstract get method(): string

  /** The request's headers, names and values flat (a runtime's raw list); read on first use. */
  protected abstract headerList(): readonly string[]

  /** The signal of the real request, made on its first use; none by default. */
  protected abortSignal(): AbortSignal | undefined {
    return undefined
  }

  /** The real Request, made on first use. */
  static real(view: RequestView): Request {
    view.#request ??= new Request(view.#url, {
      method: view.method,
      headers: view.headers,
      signal: view.abortSignal(),
    })
    return view.#request
  }

  /** The request's URL. */
  get url(): string {
    return this.#url
  }

  /**
   * One header of a view, as `view.headers.get(name)` answers it (repeated values joined with
   * `, `, each trimmed of HTTP whitespace), read from the runtime's list without making the
   * `Headers` unless they were made already (they may have been changed since).
   * @param name - the header's name, in lower case
   */
  static header(view: RequestView, name: string): string | null {
    if (view.#headers) return view.#headers.get(name)
    const list = view.headerList()
    let value: string | null = null
    for (let i = 0; i + 1 < list.length; i += 2) {
      const key = list[i] as string
      if (key.length !== name.length || key.toLowerCase() !== name) continue
      const item = trimHttpWhitespace(list[i + 1] as string)
      value = value === null ? item : `${value}, ${item}`
    }
    return value
  }

  /** The request's headers, made on first use. */
  get headers(): Headers {
    if (!this.#headers) {
      const headers = new Headers()
      const list = this.headerList()
      for (let i = 0; i + 1 < list.length; i += 2) {
        headers.append(list[i] as string, list[i + 1] as string)
      }
      this.#headers = headers
    }
    return this.#headers
  }
}

/**
 * One header of a request, as `request.headers.get(name)` answers it: for a {@link RequestView},
 * without making its `Headers` (the handshake's checks read five headers, and making the
 * `Headers` costs more than the rest of the request).
 * @param name - the header's name, in lower case
 */
export function headerOf(request: Request, name: string): string | null {
  return (request as unknown) instanceof RequestView
    ? RequestView.header(request as unknown as RequestView, name)
    : request.headers.get(name)
}

// HTTP whitespace (tab, line feed, carriage return, space), which `Headers` strips from values.
const HTTP_WHITESPACE = /^[\t\n\r ]+|[\t\n\r ]+$/g
function trimHttpWhitespace(value: string): string {
  const last = value.length - 1
  if (last < 0) return value
  const edge = (code: number) => code === 0x20 || code === 0x09 || code === 0x0a || code === 0x0d
  return edge(value.charCodeAt(0)) || edge(value.charCodeAt(last))
    ? value.replace(HTTP_WHITESPACE, '')
    : value
}

const OWN = new Set<PropertyKey>(['constructor', 'url', 'method', 'headers'])

/** Chains the prototype to `proto`, and forwards its other members to the real Request. */
function delegateTo(proto: object): void {
  const target = RequestView.prototype
  Object.setPrototypeOf(target, proto)
  for (let p: object | null = proto; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const key of Reflect.ownKeys(p)) {
      if (OWN.has(key) || Object.hasOwn(target, key)) continue
      const descriptor = Object.getOwnPropertyDescriptor(p, key) as PropertyDescriptor
      if (descriptor.get) {
        Object.defineProperty(target, key, {
          configurable: true,
          get(this: RequestView) {
            return Reflect.get(RequestView.real(this), key)
          },
        })
      } else if (typeof descriptor.value === 'function') {
        Object.defineProperty(target, key, {
          configurable: true,
          writable: true,
          value(this: RequestView, ...args: unknown[]) {
            const real = RequestView.real(this)
            const method = Reflect.get(real, key) as (...args: unknown[]) => unknown
            return method.apply(real, args)
          },
        })
      }
    }
  }
}

/**
 * The bytes of a binary message in a `Uint8Array` of their own, never a view of a larger or
 * shared buffer (runtimes hand over slices of pooled buffers), nor a subclass (Node's `Buffer`).
 */
export function ownBytes(view: Uint8Array): Uint8Array {
  if (view.byteOffset !== 0 || view.byteLength !== view.buffer.byteLength)
    return new Uint8Array(view)
  return view.constructor === Uint8Array ? view : new Uint8Array(view.buffer)
}

// --- a Response on a raw byte stream ---

/**
 * A raw byte stream to a client, as {@link writeResponse} uses it: shaped like a Node stream
 * (`write` says false when the caller should wait for `'drain'`), so that such a socket is one.
 */
export interface ByteSink {
  /** True once the stream is gone. */
  readonly destroyed: boolean
  /** Writes bytes; false when the caller should wait for `'drain'`. */
  write(bytes: Uint8Array): boolean
  /** Writes the last bytes and ends the stream. */
  end(bytes?: Uint8Array): void
  /** Tears the stream down at once. */
  destroy(): void
  /** Reads and drops what the client still sends. */
  resume(): void
  /** `'drain'`: it can take more; `'close'`: it is gone; `'end'`: the client ended its side. */
  on(event: 'drain' | 'close' | 'end', listener: () => void): unknown
  /** As `on`, for one call. */
  once(event: 'drain' | 'close' | 'end', listener: () => void): unknown
  /** Removes a listener. */
  off(event: 'drain' | 'close' | 'end', listener: () => void): unknown
}

// Framing is ours: a length or chunks, then the connection closes.
const FRAMING_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length'])

/** The most bytes of a ready body that are sent with a length; past them the body streams. */
const READ_AHEAD_BYTES = 64 * 1024

const NEXT_TURN = Symbol('next turn')

/**
 * Calls `fn` in a later turn of the event loop, once the microtasks queued now (and those they
 * queue) have run: `setImmediate` where the runtime has one (Node, Bun), which runs before any
 * timer; a zero timer elsewhere (Deno, workerd), clamped to at most 4 ms by the HTML rules.
 */
export const nextTurn: (fn: () => void) => void = (() => {
  const immediate = (globalThis as { setImmediate?: (fn: () => void) => unknown }).setImmediate
  return typeof immediate === 'function'
    ? (fn) => void immediate(fn)
    : (fn) => void setTimeout(fn, 0)
})()
const ignore = () => {}

/** The bytes of a text whose characters are all below 256 (an HTTP head). */
function latin1(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length)
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i)
  return bytes
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  let size = 0
  for (const part of parts) size += part.byteLength
  const bytes = new Uint8Array(size)
  let at = 0
  for (const part of parts) {
    bytes.set(part, at)
    at += part.byteLength
  }
  return bytes
}

const CRLF = latin1('\r\n')
const chunk = (bytes: Uint8Array) =>
  concat([latin1(`${bytes.byteLength.toString(16)}\r\n`), bytes, CRLF])

/** Resolves when the sink can take more, or has closed. */
function writable(sink: ByteSink): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      sink.off('drain', done)
      sink.off('close', done)
      resolve()
    }
    sink.on('drain', done)
    sink.on('close', done)
  })
}

/**
 * Writes `response` on a raw byte stream (status line, headers, body) and ends it: how a refused
 * upgrade, or any route's answer to an upgrade request, reaches a client where the runtime gives
 * no HTTP response object for it (Node's `upgrade` event).
 *
 * What the body has ready at once, before this turn of the event loop ends (up to 64 KiB: a
 * refusal, a JSON answer), goes out with its `Content-Length`; a body still being produced (a stream of events, a large download) is sent
 * in chunks as it comes, at the pace the client reads, and cancelled when the client leaves.
 * @param sink - the client's connection
 * @param response - the app's answer
 * @param method - the request's method (a HEAD gets no body)
 * @param reasons - the reason phrase of each status, for a response with no `statusText`
 */
export async function writeResponse(
  sink: ByteSink,
  response: Response,
  method: string,
  reasons: Readonly<Record<number, string | undefined>> = {},
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
  // "Ready at once" is what the body yields before this turn of the event loop ends: what a
  // string or a buffer gives through microtasks. One deadline for the whole body, not one per
  // chunk, or a body producing a chunk per timer tick would be read ahead up to 64 KiB first.
  const turnEnds = new Promise<typeof NEXT_TURN>((resolve) => nextTurn(() => resolve(NEXT_TURN)))
  while (next && readyBytes <= READ_AHEAD_BYTES) {
    const result = await Promise.race([next, turnEnds])
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
  if (sink.destroyed) {
    await reader?.cancel().catch(ignore)
    return
  }

  const lines = [`HTTP/1.1 ${status} ${response.statusText || reasons[status] || ''}`]
  lines.push(...headerLines(response.headers, FRAMING_HEADERS))
  if (!bodyless) lines.push(ended ? `content-length: ${readyBytes}` : 'transfer-encoding: chunked')
  else if (method === 'HEAD' && response.headers.has('content-length')) {
    lines.push(`content-length: ${response.headers.get('content-length')}`)
  }
  lines.push('connection: close', '', '')
  const head = latin1(lines.join('\r\n'))

  // Read and drop what the client still sends, so that closing the connection does not reset it
  // (a reset can discard the response before the client reads it).
  sink.resume()
  if (ended) sink.end(concat([head, ...ready]))
  else await streamBody(sink, head, ready, reader as ReadableStreamDefaultReader<Uint8Array>, next)
  // A client that never closes its side must not hold the connection open.
  const linger = setTimeout(() => sink.destroy(), 2000)
  sink.once('close', () => clearTimeout(linger))
}

/** Sends a body in chunks as the app produces it; cancels it when the client goes away. */
async function streamBody(
  sink: ByteSink,
  head: Uint8Array,
  ready: Uint8Array[],
  reader: ReadableStreamDefaultReader<Uint8Array>,
  first: ReturnType<ReadableStreamDefaultReader<Uint8Array>['read']> | undefined,
): Promise<void> {
  // A client that closed its side is gone, as Node's own HTTP server takes it.
  const cancel = () => void reader.cancel().catch(ignore)
  sink.once('close', cancel)
  sink.once('end', cancel)
  try {
    sink.write(concat([head, ...ready.filter((bytes) => bytes.byteLength > 0).map(chunk)]))
    let next = first
    while (next && !sink.destroyed) {
      const result = await next
      if (result.done) break
      if (result.value.byteLength > 0 && !sink.write(chunk(result.value))) await writable(sink)
      next = reader.read()
    }
    if (!sink.destroyed) sink.end(latin1('0\r\n\r\n'))
  } catch {
    // The body failed half-way: the client must not take what it got for the whole.
    sink.destroy()
  } finally {
    sink.off('close', cancel)
    sink.off('end', cancel)
  }
}

// --- an upgrade the runtime completes after the app ---

/** Where {@link deferredUpgrade} leaves, in `c.env`, the upgrade the app accepted. */
const PENDING = Symbol('handshake.pending')

interface Pending {
  accepted?: UpgradeRequest
}

/**
 * The `upgrade` of an adapter whose runtime writes the 101 itself once the app has answered
 * (Node's `ws`): it keeps the accepted request where {@link answerUpgrade} finds it, and answers
 * with a placeholder response that carries the 101's headers.
 * @param hint - the error's message when the request came through none of the adapter's servers
 */
export function deferredUpgrade(hint: string): Adapter['upgrade'] {
  return (c, request) => {
    const env = c.env as { [PENDING]?: Pending } | undefined
    const pending = env && typeof env === 'object' ? env[PENDING] : undefined
    if (!pending) throw new Error(hint)
    if (pending.accepted) throw new Error('upgrade() ran twice for one request')
    pending.accepted = request
    return new Response(null, { headers: handshakeHeaders(request) })
  }
}

/** What a runtime does with an upgrade request once the app has answered it. */
export interface UpgradeAnswer {
  /** True when the client left while the app answered: the socket never opens. */
  gone(): boolean
  /** Completes the upgrade the app accepted; `answer` carries the 101's headers. */
  complete(accepted: UpgradeRequest, answer: Response): void
  /** Writes the app's answer, which is not an upgrade: a refusal, a 404, any route's response. */
  write(answer: Response): Promise<void>
  /** True when a 404 that accepted nothing is left to someone else (another listener). */
  passOn(): boolean
}

/**
 * Calls the app for an upgrade request whose 101 the runtime writes itself (see
 * {@link deferredUpgrade}), then completes the upgrade it accepted, or writes its answer. A throw
 * or an answer that is no `Response` is a 500; an accepted upgrade whose answer was rewritten
 * (middleware) is abandoned, and so is one whose client left.
 * @param fetch - the app's fetch
 * @param request - the request, for the app
 * @param env - the app's `c.env`; it also carries the pending upgrade
 * @param answer - the runtime's side
 */
export async function answerUpgrade(
  fetch: (request: Request, env: never) => unknown,
  request: Request,
  env: object,
  answer: UpgradeAnswer,
): Promise<void> {
  const pending: Pending = {}
  let response: unknown
  try {
    response = await fetch(request, Object.assign(env, { [PENDING]: pending }) as never)
  } catch (err) {
    console.error(err)
  }
  const reply = response instanceof Response ? response : new Response(null, { status: 500 })
  const accepted = pending.accepted
  // `c.env` lives as long as the connection: it need not keep the core's request object.
  pending.accepted = undefined
  if (answer.gone()) {
    accepted?.abandon()
    await reply.body?.cancel().catch(ignore)
    return
  }
  if (accepted && reply.status === 200) return answer.complete(accepted, reply)
  accepted?.abandon()
  // A path the app does not route may belong to another listener.
  if (!accepted && reply.status === 404 && answer.passOn()) return
  return answer.write(reply)
}

// --- servers ---

/** The app an adapter's `serve(app, options)` serves: a Hono app, or anything with its `fetch`. */
export interface FetchApp {
  /** Answers a request; `env` is the runtime's (Hono's `c.env`). */
  fetch(request: Request, env: never): unknown
}

/**
 * The app's fetch for a server that is a hub: each request's `env` (the runtime's object) gets
 * the hub under {@link HUB}, where `getHub(c)` finds it.
 */
export function withHub(app: FetchApp, own: Hub): (request: Request, env: object) => unknown {
  return (request, env) => app.fetch(request, Object.assign(env, { [HUB]: own }) as never)
}

/**
 * The server that `serve(app, options)` resolves to on every runtime: its hub's topics and
 * connections, its address, and the shutdown that {@link HandshakeServer.shutdown} describes,
 * which closes the hub's backplane last. It prints where it listens
 * (`Listening on http://127.0.0.1:3000/`) unless `onListen` is given, which is called instead.
 * @param own - the server's hub
 * @param server - the runtime's own server
 * @param address - where it listens
 * @param stop - the runtime's graceful shutdown
 * @param onListen - the app's `onListen`
 */
export function hubServer<S>(
  own: Hub,
  server: S,
  address: ServerAddress,
  stop: (options?: ShutdownOptions) => Promise<void>,
  onListen?: (address: ServerAddress) => void,
): HandshakeServer<S> {
  if (onListen) onListen(address)
  else {
    const host = address.hostname.includes(':') ? `[${address.hostname}]` : address.hostname
    console.log(`Listening on http://${host}:${address.port}/`)
  }
  let stopping: Promise<void> | undefined
  const run = async (options?: ShutdownOptions): Promise<void> => {
    try {
      await stop(options)
    } catch (err) {
      // Refused before anything was closed (an invalid code, reason or timeout): nothing ran.
      if (own.connections.accepting) {
        stopping = undefined
        throw err
      }
      console.error('The server failed to stop cleanly; its connections are closed:', err)
    }
    // The hub's backplane goes last: its connections to the engine would keep the process
    // alive once the last WebSocket has closed.
    try {
      await own.topics.closeBackplane()
    } catch (err) {
      console.error(
        "The hub's backplane failed to close; the server has stopped. Close the backplane's own clients (the Redis ones) if they are still open:",
        err,
      )
    }
  }
  return {
    address,
    server,
    topics: own.topics,
    connections: own.connections,
    shutdown(options) {
      stopping ??= run(options)
      return stopping
    },
  }
}

/** When a shutdown with these options must be over: now plus its `timeout` (10 s by default). */
export function shutdownDeadline(options: ShutdownOptions | undefined): number {
  return Date.now() + (options?.timeout ?? DEFAULT_SHUTDOWN_TIMEOUT)
}

/**
 * Runs `fn` once `deadline` (a `Date.now()` time) has passed: now, awaited, when it has; else on
 * a timer that does not keep the process alive (where the runtime can `unref` one).
 */
export async function atDeadline(deadline: number, fn: () => unknown): Promise<void> {
  const left = deadline - Date.now()
  if (left <= 0) return void (await fn())
  const timer = setTimeout(() => void fn(), left) as { unref?: () => void }
  timer.unref?.()
}

const hubs = new WeakMap<object, Hub>()

/** The hub of a runtime's server (one per server, made on first use), for adapters that get
 * the server with each request (Bun). */
export function hubOf(server: object): Hub {
  let own = hubs.get(server)
  if (!own) {
    own = createHub()
    hubs.set(server, own)
  }
  return own
}
