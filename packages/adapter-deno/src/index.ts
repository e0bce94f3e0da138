/**
 * `@handshake/deno`: runs Handshake controllers on Deno, through `Deno.upgradeWebSocket`.
 * Importing the package installs the adapter, so the short form is a plain
 * `Deno.serve({ port: 8000 }, app.fetch)` after `import '@handshake/deno'`: its connections and
 * the app's routes share the package's default {@link hub}. {@link serve} (the same
 * `serve(app, options)` as on Node and Bun) starts a server that is a hub of its own, with a
 * graceful shutdown that closes every connection with 1001 first and waits for the peers.
 * @module
 */
import { CloseCode, type Hub, type ShutdownOptions } from '@handshake/core'
import * as port from '@handshake/core/adapter'
import type { Context } from 'hono'

export type { ShutdownOptions } from '@handshake/core'
export type { FetchApp } from '@handshake/core/adapter'

/** The address a Deno server listens on. */
export interface DenoAddr {
  readonly hostname: string
  readonly port: number
}

/** The part of Deno's `HttpServer` this package uses. */
export interface DenoHttpServer {
  readonly addr: DenoAddr
  readonly finished: Promise<void>
  shutdown(): Promise<void>
  unref(): void
}

type Handler = (request: Request, info: { remoteAddr: DenoAddr }) => Response | Promise<Response>
/** The part of the `Deno` namespace this package uses; declared here so no Deno types are needed. */
interface DenoNamespace {
  upgradeWebSocket(request: Request, options?: { idleTimeout?: number }): Upgraded
  serve(options: ServeInit, handler: Handler): DenoHttpServer
}
type Upgraded = { socket: WebSocket; response: Response }
type ServeInit = { port?: number; hostname?: string; signal?: AbortSignal; onListen?: () => void }

/** Options of {@link serve}. */
export interface ServeOptions {
  /**
   * Deno's `idleTimeout`, in seconds: Deno pings an idle peer on its own and, when no pong comes
   * back within this time, closes the connection with 1001 (the Conn ends with 1006). 0 turns it
   * off. It never applies once a close has started. @defaultValue Deno's, 30 s
   */
  idleTimeout?: number
  /** @defaultValue 8000 */
  port?: number
  /**
   * The address to listen on; `'0.0.0.0'` for every interface. The default is 127.0.0.1, as on
   * Node and Bun (Deno's own is every interface), so `--allow-net=127.0.0.1` is all it needs.
   * @defaultValue '127.0.0.1'
   */
  hostname?: string
  /** Called once the server listens, with its address; by default it prints it, as Deno does. */
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
export type HandshakeServer = port.HandshakeServer<DenoHttpServer>

function deno(): DenoNamespace {
  const runtime = (globalThis as { Deno?: DenoNamespace }).Deno
  if (!runtime)
    throw new Error('@handshake/deno runs on Deno only: this runtime has no Deno global')
  return runtime
}

const PROTOCOL_FAULT = /^(invalid|reserved bits|control frame|ping frame too large|unmasked)/i
/**
 * The close code a Deno fault calls for, from its message (Deno reports only a message). The
 * messages come from Deno's WebSocket library (fastwebsockets); unknown ones, and the end of
 * the TCP stream ("Unexpected EOF"), have no code and end the Conn as abnormal (1006).
 */
function faultCode(message: string): number | undefined {
  if (/utf-?8/i.test(message)) return CloseCode.InvalidFramePayloadData
  if (/^frame too large/i.test(message)) return CloseCode.MessageTooBig
  if (PROTOCOL_FAULT.test(message)) return CloseCode.ProtocolError
  return undefined
}

/** The default hub: that of the short form, `Deno.serve(app.fetch)`. */
export const hub: Hub = port.createHub()

/** The Deno adapter, for one `idleTimeout`: maps `Deno.upgradeWebSocket` onto the core's port. */
function denoAdapter(idleTimeout?: number): port.Adapter {
  return {
    name: 'deno',
    hub: () => hub,
    upgrade(c: Context, request: port.UpgradeRequest): Response {
      // Deno releases the request once upgraded: its headers then throw "Request closed". Keep
      // what `serve` may read of it (crossws snapshots it too, h3js/crossws adapters/deno.ts).
      const detached = new DetachedRequest(c.req.raw) as unknown as Request
      const listener = new DenoSocket(request, c.req.raw)
      // The subprotocol is not passed to Deno: it splits the offer on ", " exactly, so a list
      // sent as "a,b" (the ws client does) makes upgradeWebSocket throw "Protocol 'b' not in
      // the request's protocol list" (Deno 2.9.6). The core chose it; the header carries it.
      const lent = new Proxy({}, listener) as Request
      const { socket, response } = deno().upgradeWebSocket(lent, { idleTimeout })
      c.req.raw = detached
      // Headers added to the upgrade response reach the client since Deno 2 with Deno.serve
      // (denoland/deno#19277). The core refuses the handshake's own headers in upgradeHeaders.
      port.handshakeHeaders(request, request.protocol, response.headers)
      // Deno's default is 'blob' per the WHATWG spec; the core wants the bytes at once.
      socket.binaryType = 'arraybuffer'
      listener.socket = socket
      for (const t of ['open', 'message', 'error', 'close']) socket.addEventListener(t, listener)
      return response
    },
  }
}

/**
 * The request `serve` sees once Deno has closed the original, read before the upgrade: a view,
 * where a `Request` copy costs about 13 µs per upgrade on Deno 2.9 (WebIDL conversions).
 */
class DetachedRequest extends port.RequestView {
  readonly #method: string
  readonly #list: string[] = []
  constructor(raw: Request) {
    super(raw.url)
    this.#method = raw.method
    raw.headers.forEach((value, name) => {
      this.#list.push(name, value)
    })
  }
  get method(): string {
    return this.#method
  }
  protected headerList(): readonly string[] {
    return this.#list
  }
}

/**
 * The core's socket over a Deno `WebSocket`, and the listener of its events: one object per
 * connection, where handler properties (`onmessage`...) would make a wrapper closure each.
 * Also the handler of the proxy Deno gets as the request (its idle timeout keeps it): reads go
 * to the original, with no receiver (Request's getters check their brand), until the first event.
 * No terminate: Deno cannot destroy one upgraded connection (at the close timeout the core ends
 * the Conn with 1006; the TCP connection stays until the peer or the server ends it). No pause
 * or resume: Deno cannot stop reading one socket. No ping: Deno pings on its own (idleTimeout).
 */
class DenoSocket implements port.RuntimeSocket {
  #events: port.SocketEvents | undefined
  /** The close frame this side sent, once it has. */
  #sent: { code: number; reason: string } | undefined
  socket!: WebSocket
  /** The last bufferedAmount read plus the bytes sent since: the core's read is a Deno op. */
  bufferedAtMost = 0

  constructor(
    /** The upgrade, until the socket opens or ends. */
    public request: port.UpgradeRequest | undefined,
    /** The request lent to Deno, until the first event. */
    public lent: Request | undefined,
  ) {}

  get(_target: object, key: PropertyKey): unknown {
    if (!this.lent) throw new Error('@handshake/deno: the upgrade request was read after open')
    return Reflect.get(this.lent, key)
  }

  // Deno has no drain event: the core polls bufferedAmount with a backing-off timer.
  get emitsDrain(): boolean {
    return false
  }

  get bufferedAmount(): number {
    this.bufferedAtMost = this.socket.bufferedAmount
    return this.bufferedAtMost
  }

  // Exactly the view's bytes. Deno counts the UTF-8 payload: 3 bytes at most a UTF-16 unit.
  send(data: string | Uint8Array): void {
    this.bufferedAtMost += typeof data === 'string' ? data.length * 3 : data.byteLength
    this.socket.send(data)
  }

  close(code: number, reason: string): void {
    this.#sent ??= { code, reason }
    this.socket.close(code, reason)
  }

  handleEvent(event: Event): void {
    const request = this.request
    this.request = undefined
    this.lent = undefined
    if (event.type === 'message') {
      const data = (event as MessageEvent<string | ArrayBuffer>).data
      this.#events?.message(typeof data === 'string' ? data : new Uint8Array(data))
    } else if (event.type === 'open') {
      this.socket.removeEventListener('open', this)
      this.#events = (request as port.UpgradeRequest).open(this)
    } else if (request) {
      // The socket ended before it opened (the client left during the handshake).
      request.abandon()
    } else if (event.type === 'error') {
      const { message, error } = event as ErrorEvent
      const cause = error instanceof Error ? error : new Error(message || 'WebSocket error')
      this.#events?.error(cause, faultCode(message || 'WebSocket error'))
    } else if (event.type === 'close') {
      // Code 0: no close frame (1006). A second close event (idle timeout): the core takes one.
      const { code, reason, wasClean } = event as CloseEvent
      // After our close frame, Deno (fastwebsockets) drops the TCP connection when the peer
      // sends data instead of its answer, and reports code 0. RFC 6455 lets the peer finish
      // sending first: the close was ours, so it ends with our code, not clean (Deno 2.9.6).
      if (code === 0 && this.#sent) this.#events?.closed(this.#sent.code, this.#sent.reason, false)
      else this.#events?.closed(code === 0 ? CloseCode.AbnormalClosure : code, reason, wasClean)
    }
  }
}

/** The adapter installed when the package is imported; the one `Deno.serve(app.fetch)` uses. */
export const adapter: port.Adapter = denoAdapter()
port.installAdapter(adapter)

// What is left of a shutdown's deadline when the core's shutdown ended at it (its timer may
// fire a millisecond before the wall clock says so): no time for Deno's graceful stop.
const DEADLINE_REACHED_MS = 10

/**
 * Serves a Hono app on Deno, and resolves to the server once it listens: a hub of its own
 * (`getHub(c)` in its routes, and `conn.hub`), whose `shutdown()` closes every connection
 * through its close handshake before stopping the server.
 *
 * @example
 * ```ts
 * const server = await serve(app, { port: 8000 })
 * Deno.addSignalListener('SIGTERM', () => server.shutdown())
 * ```
 */
export async function serve(
  app: port.FetchApp,
  options: ServeOptions = {},
): Promise<HandshakeServer> {
  const own = port.createHub()
  const serverAdapter = denoAdapter(options.idleTimeout)
  // Aborting cuts every connection at once: the end of a shutdown's deadline.
  const cut = new AbortController()
  let onListen = () => {}
  const listened = new Promise<void>((resolve) => {
    onListen = resolve
  })
  const { hostname = '127.0.0.1', port: at = 8000 } = options
  // Hono's env on Deno is the handler info (hono/deno's getConnInfo reads remoteAddr from it),
  // with this server's hub and adapter; remoteAddr is read now, before Deno releases it.
  const handler: Handler = (request, info) => {
    const env = Object.create(info, {
      remoteAddr: { value: info.remoteAddr, enumerable: true },
      [port.ADAPTER]: { value: serverAdapter },
      [port.HUB]: { value: own },
    })
    return app.fetch(request, env as never) as Response | Promise<Response>
  }
  const server = deno().serve({ port: at, hostname, signal: cut.signal, onListen }, handler)
  await listened
  let finished = false
  void server.finished.then(() => {
    finished = true
  })
  // Deno's own shutdown answers every WebSocket with its own 1001 and cuts it at once, so it
  // runs after the core's, which waits for the peers.
  const stop = async (shutdownOptions: ShutdownOptions | undefined): Promise<void> => {
    const deadline = port.shutdownDeadline(shutdownOptions)
    await own.connections.shutdown(shutdownOptions)
    const left = deadline - Date.now()
    if (left <= DEADLINE_REACHED_MS) {
      // A peer did not answer: its TCP connection is still open, and only the signal cuts it.
      // Never after server.shutdown(): aborting then throws BadResource from Deno's listener,
      // an uncaught error (Deno 2.9.6); nor after the server finished, for the same reason.
      if (!finished) cut.abort()
      return
    }
    let timer: ReturnType<typeof setTimeout> | undefined
    const expired = new Promise<'expired'>((resolve) => {
      timer = setTimeout(() => resolve('expired'), left)
    })
    const outcome = await Promise.race([server.shutdown(), expired])
    clearTimeout(timer)
    // A response that is still being sent (a stream that never ends) holds Deno's graceful
    // shutdown forever: stop waiting at the deadline, and let the process end without it.
    if (outcome === 'expired') server.unref()
  }
  const { hostname: host, port: listening } = server.addr
  return port.hubServer(own, server, { hostname: host, port: listening }, stop, options.onListen)
}
