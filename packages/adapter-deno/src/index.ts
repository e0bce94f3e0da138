/**
 * `@handshake/deno`: runs Handshake controllers on Deno, through `Deno.upgradeWebSocket`.
 *
 * Importing the package installs the adapter, so the entry file is the usual one:
 *
 * ```ts
 * import '@handshake/deno'
 * import { app } from './app.ts'
 *
 * Deno.serve({ port: 8000 }, app.fetch)
 * ```
 *
 * That is the short form: its connections and the app's routes share the package's default
 * {@link hub}. Use {@link serve} (the same `serve(app, options)` as on Node and Bun) for a server
 * that is a hub of its own, with a graceful shutdown that closes every connection with 1001
 * first and waits for the peers.
 * @module
 */
import { CloseCode, type Hub, type ShutdownOptions } from '@handshake/core'
import {
  ADAPTER,
  type Adapter,
  type HandshakeServer as CoreServer,
  createHub,
  DEFAULT_SHUTDOWN_TIMEOUT,
  HUB,
  installAdapter,
  type RuntimeSocket,
  type SocketEvents,
  type UpgradeRequest,
} from '@handshake/core/adapter'
import type { Context } from 'hono'

export type { ShutdownOptions } from '@handshake/core'

// --- types ---

/** The address a Deno server listens on. */
export interface DenoAddr {
  readonly hostname: string
  readonly port: number
}

/** What Deno hands a request handler besides the request (Deno's `ServeHandlerInfo`). */
interface DenoServeHandlerInfo {
  readonly remoteAddr: DenoAddr
}

/** The part of Deno's `HttpServer` this package uses. */
export interface DenoHttpServer {
  readonly addr: DenoAddr
  readonly finished: Promise<void>
  shutdown(): Promise<void>
  unref(): void
}

/** The part of the `Deno` namespace this package uses; declared here so no Deno types are needed. */
interface DenoNamespace {
  upgradeWebSocket(
    request: Request,
    options?: { protocol?: string; idleTimeout?: number },
  ): { socket: WebSocket; response: Response }
  serve(
    options: {
      port?: number
      hostname?: string
      signal?: AbortSignal
      onListen?: (addr: DenoAddr) => void
    },
    handler: (request: Request, info: DenoServeHandlerInfo) => Response | Promise<Response>,
  ): DenoHttpServer
}

/** Options of {@link serve}. */
export interface ServeOptions {
  /**
   * Deno's `idleTimeout`, in seconds: Deno pings an idle peer on its own and, when no pong comes
   * back within this time, closes the connection with 1001 (the Conn ends with 1006). 0 turns it
   * off. It never applies once a close has started.
   * @defaultValue undefined (Deno's default, 30 s)
   */
  idleTimeout?: number
  /** @defaultValue 8000 */
  port?: number
  /**
   * The address to listen on; `'0.0.0.0'` for every interface. The default is 127.0.0.1, as in
   * the Node and Bun adapters' `serve` (Deno's own is every interface), so
   * `--allow-net=127.0.0.1` is all the permission it needs.
   * @defaultValue '127.0.0.1'
   */
  hostname?: string
  /**
   * Called once the server listens, with its address (the real port when `port` is 0).
   * @defaultValue prints `Listening on http://<hostname>:<port>/`, as `Deno.serve` does
   */
  onListen?: (addr: DenoAddr) => void
}

/**
 * A Deno server started by {@link serve}: its hub, its address and its shutdown. Its
 * `shutdown()` resolves by `timeout` (10 s by default) whatever the peers or the app do. New
 * upgrades get 503; every open connection gets one close frame (1001 `Server shutting down` by
 * default) and `serve` sees its loop end; it waits for the peers' answers. Deno keeps listening
 * during that wait: it has no way to stop listening that leaves the open WebSockets alone. Then:
 * - when every peer answered before the deadline, Deno's `server.shutdown()` stops listening
 *   and lets the pending HTTP requests finish, until the deadline. A response still being sent
 *   then (a stream that never ends) goes on after this resolves: Deno cannot cut it once its
 *   graceful shutdown has begun. The server no longer keeps the process alive;
 * - at the deadline, Deno cuts everything at once, the connections that never answered
 *   included (its `signal` aborts).
 */
export type HandshakeServer = CoreServer<DenoHttpServer>

/** The app {@link serve} serves: anything with Hono's `fetch`. */
export interface FetchApp {
  fetch(request: Request, env?: unknown): Response | Promise<Response>
}

// --- adapter ---

function deno(): DenoNamespace {
  const runtime = (globalThis as { Deno?: DenoNamespace }).Deno
  if (!runtime)
    throw new Error('@handshake/deno runs on Deno only: this runtime has no Deno global')
  return runtime
}

/**
 * The close code a Deno fault calls for, from its message (Deno reports only a message). The
 * messages come from Deno's WebSocket library (fastwebsockets); unknown ones, and the end of
 * the TCP stream ("Unexpected EOF"), have no code and end the Conn as abnormal (1006).
 */
function faultCode(message: string): number | undefined {
  if (/utf-?8/i.test(message)) return CloseCode.InvalidFramePayloadData
  if (/^frame too large/i.test(message)) return CloseCode.MessageTooBig
  if (/^(invalid|reserved bits|control frame|ping frame too large|unmasked)/i.test(message)) {
    return CloseCode.ProtocolError
  }
  return undefined
}

/**
 * The default hub: that of the short form (`Deno.serve(app.fetch)`), whose connections and
 * routes share it. Each server of {@link serve} has its own.
 */
export const hub: Hub = createHub()

/**
 * The Deno adapter: maps `Deno.upgradeWebSocket` onto the core's port. Importing the package
 * installs one ({@link adapter}); {@link serve} makes one per server, for its `idleTimeout`.
 */
class DenoAdapter implements Adapter {
  readonly name = 'deno'
  readonly #idleTimeout: number | undefined

  constructor(idleTimeout?: number) {
    this.#idleTimeout = idleTimeout
  }

  hub(): Hub {
    return hub
  }

  upgrade(c: Context, request: UpgradeRequest): Response {
    const raw = c.req.raw
    // Deno releases the request once upgraded: its headers then throw "Request closed" (crossws
    // snapshots it too, h3js/crossws src/adapters/deno.ts). Keep what `serve` may read of it.
    const detached = DetachedRequest.of(raw)
    // The subprotocol is not passed to Deno: it splits the offer on ", " exactly, so a list
    // sent as "a,b" (the ws client does) makes upgradeWebSocket throw "Protocol 'b' not in the
    // request's protocol list" (seen on Deno 2.9.6). The core chose it; the header carries it.
    const { socket, response } = deno().upgradeWebSocket(raw, {
      idleTimeout: this.#idleTimeout,
    })
    c.req.raw = detached
    // Headers added to the upgrade response reach the client since Deno 2 with Deno.serve
    // (denoland/deno#19277 asked for it; the response's headers are mutable now). The core
    // refuses the handshake's own headers in upgradeHeaders.
    // forEach: an iterator costs a WebIDL iterator object per upgrade, even over no headers.
    request.headers.forEach((value, name) => {
      response.headers.append(name, value)
    })
    if (request.protocol !== undefined) {
      response.headers.set('Sec-WebSocket-Protocol', request.protocol)
    }
    forward(socket, request)
    return response
  }
}

/**
 * The request `serve` sees once Deno has closed the original (Deno releases the request once
 * upgraded: its headers then throw "Request closed"). It is a `Request` (`instanceof Request`
 * holds) whose `url`, `method` and `headers` come from what was read before the upgrade, and
 * whose other members are those of a real `Request`, made on first use. A copy made at once,
 * `new Request(raw.url, { method, headers: raw.headers })`, costs about 13 µs of CPU per upgrade
 * on Deno 2.9 (WebIDL conversions of the headers) and a `Request` and `Headers` kept for the
 * connection's life, for a request most controllers never read again.
 */
class DetachedRequest {
  readonly #url: string
  readonly #method: string
  // Names and values, flat.
  readonly #list: string[]
  #headers: Headers | undefined
  #request: Request | undefined

  private constructor(raw: Request) {
    const list: string[] = []
    raw.headers.forEach((value, name) => {
      list.push(name, value)
    })
    this.#url = raw.url
    this.#method = raw.method
    this.#list = list
  }

  static of(raw: Request): Request {
    const proto = globalThis.Request.prototype
    if (Object.getPrototypeOf(DetachedRequest.prototype) !== proto) delegateTo(proto)
    return new DetachedRequest(raw) as unknown as Request
  }

  /** The real Request, made on first use. It has no body, which an upgrade never has. */
  static real(request: DetachedRequest): Request {
    request.#request ??= new Request(request.#url, {
      method: request.#method,
      headers: request.headers,
    })
    return request.#request
  }

  get url(): string {
    return this.#url
  }

  get method(): string {
    return this.#method
  }

  get headers(): Headers {
    if (!this.#headers) {
      const headers = new Headers()
      const list = this.#list
      for (let i = 0; i < list.length; i += 2) {
        headers.append(list[i] as string, list[i + 1] as string)
      }
      this.#headers = headers
    }
    return this.#headers
  }
}

const OWN = new Set<PropertyKey>(['constructor', 'url', 'method', 'headers'])

/** Chains the prototype to `proto`, and forwards its other members to the real Request. */
function delegateTo(proto: object): void {
  Object.setPrototypeOf(DetachedRequest.prototype, proto)
  for (let p: object | null = proto; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const key of Reflect.ownKeys(p)) {
      if (OWN.has(key) || Object.hasOwn(DetachedRequest.prototype, key)) continue
      const descriptor = Object.getOwnPropertyDescriptor(p, key) as PropertyDescriptor
      if (descriptor.get) {
        Object.defineProperty(DetachedRequest.prototype, key, {
          configurable: true,
          get(this: DetachedRequest) {
            return Reflect.get(DetachedRequest.real(this), key)
          },
        })
      } else if (typeof descriptor.value === 'function') {
        Object.defineProperty(DetachedRequest.prototype, key, {
          configurable: true,
          writable: true,
          value(this: DetachedRequest, ...args: unknown[]) {
            const real = DetachedRequest.real(this)
            const method = Reflect.get(real, key) as (...args: unknown[]) => unknown
            return method.apply(real, args)
          },
        })
      }
    }
  }
}

/**
 * The core's socket over a Deno `WebSocket`, and the listener of its events: one object per
 * connection, where handler properties (`onmessage`...) would make a wrapper closure each.
 */
class DenoSocket implements RuntimeSocket {
  #events: SocketEvents | undefined
  /** The close frame this side sent, once it has. */
  #sent: { code: number; reason: string } | undefined

  constructor(
    readonly socket: WebSocket,
    readonly request: UpgradeRequest | undefined,
  ) {}

  // Deno has no drain event: the core polls bufferedAmount with a backing-off timer.
  get emitsDrain(): boolean {
    return false
  }

  get bufferedAmount(): number {
    return this.socket.bufferedAmount
  }

  // Deno sends exactly the bytes of an ArrayBufferView, not its whole buffer.
  send(data: string | Uint8Array): void {
    this.socket.send(data)
  }

  close(code: number, reason: string): void {
    this.#sent ??= { code, reason }
    this.socket.close(code, reason)
  }

  // No terminate: Deno cannot destroy one upgraded connection. At the close timeout the core
  // ends the Conn with 1006 and the TCP connection stays until the peer or the server ends it.
  // No pause/resume: Deno cannot stop reading one socket. No ping: Deno sends its own pings
  // (idleTimeout) but offers no API for them.

  /**
   * The socket ended before it opened (the client left during the handshake): the core stops
   * counting the upgrade as on its way. True when that was the case.
   */
  #abandoned(): boolean {
    const request = this.request
    if (!request) return false
    ;(this as { request: UpgradeRequest | undefined }).request = undefined
    request.abandon()
    return true
  }

  handleEvent(event: Event): void {
    switch (event.type) {
      case 'message': {
        const data = (event as MessageEvent<string | ArrayBuffer>).data
        this.#events?.message(typeof data === 'string' ? data : new Uint8Array(data))
        return
      }
      case 'open': {
        const request = this.request as UpgradeRequest
        ;(this as { request: UpgradeRequest | undefined }).request = undefined
        this.socket.removeEventListener('open', this)
        this.#events = request.open(this)
        return
      }
      case 'error': {
        if (this.#abandoned()) return
        const message = (event as ErrorEvent).message || 'WebSocket error'
        const cause = (event as ErrorEvent).error
        this.#events?.error(cause instanceof Error ? cause : new Error(message), faultCode(message))
        return
      }
      case 'close': {
        if (this.#abandoned()) return
        // Deno reports code 0 for a connection that ended without a close frame (a fault, a
        // vanished peer): that is 1006 in RFC 6455 terms. A second close event (after an idle
        // timeout) is harmless: the core takes the first.
        const closeEvent = event as CloseEvent
        const sent = this.#sent
        if (closeEvent.code === 0 && sent) {
          // After our close frame, Deno (fastwebsockets) drops the TCP connection when the
          // peer sends data instead of its answer, and reports code 0. RFC 6455 lets the peer
          // finish sending first: the close was ours, so the connection ends with our code, not
          // clean (seen on Deno 2.9.6).
          this.#events?.closed(sent.code, sent.reason, false)
          return
        }
        const code = closeEvent.code === 0 ? CloseCode.AbnormalClosure : closeEvent.code
        this.#events?.closed(code, closeEvent.reason, closeEvent.wasClean)
        return
      }
    }
  }
}

/** Forwards a Deno socket's events to the core, once it opens. */
function forward(socket: WebSocket, request: UpgradeRequest): void {
  // Deno's default is 'blob' per the WHATWG spec; the core wants the bytes at once.
  socket.binaryType = 'arraybuffer'
  const port = new DenoSocket(socket, request)
  socket.addEventListener('open', port)
  socket.addEventListener('message', port)
  socket.addEventListener('error', port)
  socket.addEventListener('close', port)
}

/** The adapter installed when the package is imported; the one `Deno.serve(app.fetch)` uses. */
export const adapter: Adapter = new DenoAdapter()
installAdapter(adapter)

// --- serve ---

/**
 * Serves a Hono app on Deno, and resolves to the server once it listens: a hub of its own
 * (`getHub(c)` in its routes, and `conn.hub`), whose `shutdown()` closes
 * every connection through its close handshake before stopping the server.
 *
 * @example
 * ```ts
 * const server = await serve(app, { port: 8000 })
 * Deno.addSignalListener('SIGTERM', () => server.shutdown())
 * ```
 */
export async function serve(app: FetchApp, options: ServeOptions = {}): Promise<HandshakeServer> {
  const own = createHub()
  const serverAdapter = new DenoAdapter(options.idleTimeout)
  // Aborting cuts every connection at once: the end of a shutdown's deadline.
  const cut = new AbortController()
  let listening: (addr: DenoAddr) => void = () => {}
  const listened = new Promise<DenoAddr>((resolve) => {
    listening = resolve
  })
  const server = deno().serve(
    {
      port: options.port ?? 8000,
      hostname: options.hostname ?? '127.0.0.1',
      signal: cut.signal,
      onListen: (addr) => {
        listening(addr)
        // Without onListen, say where it listens, as Deno.serve does.
        if (options.onListen) options.onListen(addr)
        else {
          const host = addr.hostname.includes(':') ? `[${addr.hostname}]` : addr.hostname
          console.log(`Listening on http://${host}:${addr.port}/`)
        }
      },
    },
    (request, info) => {
      // Hono's env on Deno is the handler info (hono/deno's getConnInfo reads remoteAddr from
      // it); this server's hub and adapter ride on top of it. remoteAddr is read now because
      // Deno releases it with the request once upgraded.
      const env = Object.create(info, {
        remoteAddr: { value: info.remoteAddr, enumerable: true },
        [ADAPTER]: { value: serverAdapter },
        [HUB]: { value: own },
      })
      return app.fetch(request, env)
    },
  )
  const address = await listened
  let finished = false
  void server.finished.then(() => {
    finished = true
  })

  // Deno's own shutdown answers every WebSocket with its own 1001 and cuts it at once, so it
  // runs after the core's, which waits for the peers.
  const stop = async (shutdownOptions: ShutdownOptions | undefined): Promise<void> => {
    const deadline = Date.now() + (shutdownOptions?.timeout ?? DEFAULT_SHUTDOWN_TIMEOUT)
    await own.connections.shutdown(shutdownOptions)
    const left = deadline - Date.now()
    if (left <= DEADLINE_REACHED_MS) {
      // A peer did not answer: its TCP connection is still open, and only the signal cuts it.
      // Never after server.shutdown(): aborting then throws BadResource from Deno's listener,
      // an uncaught error (Deno 2.9.6); nor after the server finished, for the same reason.
      if (!finished) cut.abort()
      return
    }
    const graceful = server.shutdown()
    let timer: ReturnType<typeof setTimeout> | undefined
    const expired = new Promise<'expired'>((resolve) => {
      timer = setTimeout(() => resolve('expired'), left)
    })
    const outcome = await Promise.race([graceful.then(() => 'done' as const), expired])
    clearTimeout(timer)
    // A response that is still being sent (a stream that never ends) holds Deno's graceful
    // shutdown forever: stop waiting at the deadline, and let the process end without it.
    if (outcome === 'expired') server.unref()
  }

  let stopping: Promise<void> | undefined
  return {
    address: { hostname: address.hostname, port: address.port },
    server,
    topics: own.topics,
    connections: own.connections,
    shutdown(shutdownOptions) {
      // An invalid option rejects, and a later call may try again.
      stopping ??= stop(shutdownOptions)
      stopping.catch(() => {
        stopping = undefined
      })
      return stopping
    },
  }
}

/**
 * What is left of a shutdown's deadline when the core's shutdown ended at it (its timer may
 * fire a millisecond before the wall clock says so): no time for Deno's graceful stop.
 */
const DEADLINE_REACHED_MS = 10
