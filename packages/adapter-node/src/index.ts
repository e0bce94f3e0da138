/**
 * Handshake on Node: `ws` on `@hono/node-server`. Each server of {@link serve} is a hub:
 * `getHub(c)` in the app's routes and `conn.hub` are its topics and connections.
 *
 * ```ts
 * import { serve } from '@handshake/node'
 * import { app } from './app.js'
 *
 * const server = await serve(app, { port: 3000, hostname: '127.0.0.1' })
 * process.on('SIGTERM', () => server.shutdown())
 * ```
 * @module
 */
import { type IncomingMessage, type Server, STATUS_CODES } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import type { TLSSocket } from 'node:tls'
import type { ZlibOptions } from 'node:zlib'
import type { Hub, ShutdownOptions } from '@handshake/core'
import * as port from '@handshake/core/adapter'
import { createAdaptorServer, type ServerType } from '@hono/node-server'
import { WebSocketServer } from 'ws'
import { openConnection } from './socket.js'

export type { ShutdownOptions } from '@handshake/core'
export type { FetchApp } from '@handshake/core/adapter'

/** permessage-deflate settings (RFC 7692), as `ws` takes them; declared here so that this
 * package's types need no `@types/ws`. */
export interface PerMessageDeflateOptions {
  /** Whether the server resets its compression context after each message. */
  serverNoContextTakeover?: boolean
  /** Whether the client is asked to reset its compression context after each message. */
  clientNoContextTakeover?: boolean
  /** The server's LZ77 window size, as a power of two (8 to 15). */
  serverMaxWindowBits?: number
  /** The client's LZ77 window size, as a power of two (8 to 15). */
  clientMaxWindowBits?: number
  /** zlib options for compressing (a dictionary, if any, as a `Buffer` or `DataView`). */
  zlibDeflateOptions?: Omit<ZlibOptions, 'dictionary'> & {
    dictionary?: Buffer | Buffer[] | DataView
  }
  /** zlib options for decompressing. */
  zlibInflateOptions?: ZlibOptions
  /** Messages smaller than this many bytes are sent uncompressed. @defaultValue 1024 */
  threshold?: number
  /** How many zlib operations may run at once. @defaultValue 10 */
  concurrencyLimit?: number
}

/** The WebSocket options of {@link serve} and {@link attach}. */
export interface WebSocketOptions {
  /**
   * permessage-deflate (RFC 7692), as `ws` takes it: `true` for its defaults, or its options. It
   * costs CPU and memory per connection, so it is off unless set. @defaultValue false
   */
  perMessageDeflate?: boolean | PerMessageDeflateOptions
  /**
   * Which requests of the server's `upgrade` event this server answers; the others are left to
   * its other `upgrade` listeners. By default every one, except that a 404 from the app is left
   * to the other listeners when there are any. @defaultValue every request
   */
  shouldHandle?: (incoming: IncomingMessage) => boolean
}

type NodeServerOptions = Parameters<typeof createAdaptorServer>[0]
type WithoutWebSocket<T> = T extends unknown ? Omit<T, 'websocket'> : never

/**
 * Options of {@link serve}: those of `@hono/node-server`'s `serve` (`port`, `hostname`,
 * `serverOptions`, `createServer`...) but `fetch` and `websocket`, plus {@link WebSocketOptions}
 * and `onListen` (called with the address once it listens; by default it prints it). `hostname`
 * defaults to `'127.0.0.1'`, as on Bun and Deno: pass `'0.0.0.0'` (or `'::'`) for every interface.
 */
export type ServeOptions = Omit<WithoutWebSocket<NodeServerOptions>, 'fetch'> &
  WebSocketOptions & { onListen?: (address: port.ServerAddress) => void }

/** A Node server started by {@link serve}: its own hub, its address and its shutdown. */
export type HandshakeServer = port.HandshakeServer<ServerType>

/** The WebSocket side of a server given to {@link attach}: its hub (the package's {@link hub}). */
export interface WebSockets extends Hub {
  /** How many WebSocket connections are open. */
  readonly size: number
  /**
   * Shuts down gracefully (`Connections.shutdown`, "stop listening" being `server.close()`):
   * one close frame to every connection (1001 by default), 503 to new upgrades; by `timeout`
   * (10 s by default) whatever is left, requests still being answered included, is destroyed.
   * It rejects with a `RangeError`, before anything is closed, when `code` or `reason` may not
   * be sent.
   */
  shutdown(options?: ShutdownOptions): Promise<void>
  /** Stops answering the server's `upgrade` events. Open connections are left as they are. */
  detach(): void
}

/** `c.env` of an upgrade request: `@hono/node-server`'s `HttpBindings`, with no `outgoing`
 * (Node gives no `ServerResponse` for an upgrade). */
export interface UpgradeBindings {
  /** The request as Node parsed it. */
  incoming: IncomingMessage
  /** Always undefined for an upgrade request. */
  outgoing: undefined
}

/** The app's fetch, as `app.fetch` is: it is called once per upgrade request. */
export type FetchCallback = (request: Request, env: UpgradeBindings) => unknown

/** The default hub: that of {@link attach}'s servers, and of requests that came through none. */
export const hub: Hub = port.createHub()

/**
 * The Node adapter, installed by {@link serve} and {@link attach}. It keeps the accepted upgrade
 * and answers with a placeholder carrying the 101's headers: `ws` writes the real 101.
 */
export const adapter: port.Adapter = {
  name: 'node',
  hub: () => hub,
  upgrade: port.deferredUpgrade(
    "This upgrade did not come through @handshake/node: serve the app with `serve` from '@handshake/node', or `attach` it to your server, and pass its `env` on to app.fetch",
  ),
}

/** The request's `Request`; its signal aborts when the client goes away. */
class NodeRequest extends port.RequestView {
  readonly #incoming: IncomingMessage
  constructor(url: string, incoming: IncomingMessage) {
    super(url)
    this.#incoming = incoming
  }
  get method(): string {
    return this.#incoming.method ?? 'GET'
  }
  protected headerList(): readonly string[] {
    return this.#incoming.rawHeaders
  }
  protected override abortSignal(): AbortSignal {
    const controller = new AbortController()
    const socket = this.#incoming.socket
    const abort = () => controller.abort(new Error('The client closed the connection'))
    // A client that closed its side is gone too, as Node's own HTTP server takes it.
    if (socket.destroyed || socket.readableEnded) abort()
    else socket.once('close', abort).once('end', abort)
    return controller.signal
  }
}

/** The request's URL: a `//evil/x` target stays a path, and a Host that moves it is refused. */
function urlOf(incoming: IncomingMessage): string {
  const target = incoming.url ?? '/'
  if (/^https?:\/\//i.test(target)) return new URL(target).href
  const raw = incoming.rawHeaders // not `headers`, which Node would make and keep
  let host: string | undefined
  for (let i = 0; host === undefined && i + 1 < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() === 'host') host = raw[i + 1]
  }
  host ??= 'localhost'
  if (!target.startsWith('/') || /[\s/?#@\\]/.test(host)) {
    throw new TypeError(`Invalid request target or Host header: ${target} (Host: ${host})`)
  }
  const scheme = (incoming.socket as TLSSocket).encrypted ? 'https' : 'http'
  return new URL(`${scheme}://${host}${target}`).href
}

// ws writes these on the 101 itself.
const HANDSHAKE_HEADERS = new Set(['connection', 'upgrade', 'sec-websocket-accept'])
for (const name of ['extensions', 'protocol']) HANDSHAKE_HEADERS.add(`sec-websocket-${name}`)
for (const name of ['content-length', 'content-type', 'transfer-encoding', 'keep-alive'])
  HANDSHAKE_HEADERS.add(name)

const ignore = () => {}

class Attachment implements WebSockets {
  readonly #wsServers = new Map<number, WebSocketServer>()
  readonly #handshakes = new WeakMap<IncomingMessage, { headers: string[]; protocol?: string }>()
  // Upgrade requests the app is still answering: destroyed when a shutdown's deadline passes.
  readonly #answering = new Set<Duplex>()
  // The server's own close, kept from before the graceful shutdown runs: it stops listening.
  readonly #close: Server['close']
  readonly topics: Hub['topics']
  readonly connections: Hub['connections']

  constructor(
    readonly server: ServerType,
    readonly fetch: FetchCallback,
    readonly options: WebSocketOptions,
    own: Hub,
  ) {
    this.topics = own.topics
    this.connections = own.connections
    this.#close = (server as Server).close.bind(server)
    server.on('upgrade', this.#onUpgrade)
  }

  get size(): number {
    return this.connections.size
  }

  detach(): void {
    this.server.off('upgrade', this.#onUpgrade)
  }

  async shutdown(options?: ShutdownOptions): Promise<void> {
    // close() calls back once every socket has closed, or at once when not listening.
    let stopped = false
    await this.connections.shutdown(options, () => {
      stopped = true
      return new Promise((done) => this.#close(done))
    })
    // Another attach()'s shutdown already shut the hub they share, and stopped only its own
    // server: this one stops now, its connections being closed already.
    if (!stopped) this.#close(ignore)
    // Whatever is left at the deadline is torn down, upgrade requests being answered included.
    for (const socket of this.#answering) socket.destroy()
    ;(this.server as Server).closeAllConnections?.()
  }

  readonly #onUpgrade = (incoming: IncomingMessage, socket: Duplex, head: Buffer): void => {
    try {
      if (this.options.shouldHandle && !this.options.shouldHandle(incoming)) return
    } catch (err) {
      // A throw from an event listener would crash the process.
      console.error('shouldHandle failed:', err)
      return void socket.destroy()
    }
    // Until ws takes the socket, a reset by the client must not crash the process.
    socket.on('error', ignore)
    this.#answering.add(socket)
    this.#answer(incoming, socket, head)
      .catch((err) => {
        console.error('WebSocket upgrade failed:', err)
        socket.destroy()
      })
      .finally(() => this.#answering.delete(socket))
  }

  async #answer(incoming: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const method = incoming.method ?? 'GET'
    const write = (answer: Response) => port.writeResponse(socket, answer, method, STATUS_CODES)
    let request: Request
    try {
      request = new NodeRequest(urlOf(incoming), incoming) as unknown as Request
    } catch {
      return write(new Response(null, { status: 400 }))
    }
    await port.answerUpgrade(
      this.fetch,
      request,
      { incoming, outgoing: undefined, [port.HUB]: this },
      {
        gone: () => socket.destroyed,
        write,
        passOn: () => this.server.listenerCount('upgrade') > 1,
        complete: (accepted, answer) => {
          const headers = port.headerLines(answer.headers, HANDSHAKE_HEADERS)
          this.#handshakes.set(incoming, { headers, protocol: accepted.protocol })
          let opened = false
          this.#wsServerFor(accepted.maxMessageSize).handleUpgrade(incoming, socket, head, (ws) => {
            opened = true
            openConnection(ws, socket, accepted)
          })
          // ws completes at once, or gives up on a socket no longer readable and writable.
          if (!opened) accepted.abandon()
        },
      },
    )
  }

  /** One `ws` server per message size limit, since ws sets `maxPayload` per server. */
  #wsServerFor(maxPayload: number): WebSocketServer {
    let wss = this.#wsServers.get(maxPayload)
    if (wss) return wss
    wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload,
      perMessageDeflate: this.options.perMessageDeflate ?? false,
      // The core chose the subprotocol; ws would otherwise take the client's first.
      handleProtocols: (_offered, incoming) => this.#handshakes.get(incoming)?.protocol ?? false,
    })
    wss.on('headers', (headers, incoming) => {
      headers.push(...(this.#handshakes.get(incoming)?.headers ?? []))
      this.#handshakes.delete(incoming)
    })
    this.#wsServers.set(maxPayload, wss)
    return wss
  }
}

/**
 * Answers the WebSocket upgrades of a server you made yourself, through your Hono app: on the
 * server's `upgrade` event, it calls `fetch` (your `app.fetch`) with a web `Request`, and either
 * completes the upgrade that `upgrade()` accepted or writes the app's answer on the socket.
 * Other `upgrade` listeners keep working: see {@link WebSocketOptions.shouldHandle}. Its
 * connections join the package's default {@link hub}, which `getHub(c)` also returns in the
 * server's HTTP routes.
 *
 * @example
 * ```ts
 * const server = createServer(getRequestListener(app.fetch)) // from @hono/node-server
 * const websockets = attach(server, app.fetch)
 * server.listen(3000, '127.0.0.1')
 * process.on('SIGTERM', () => websockets.shutdown())
 * ```
 * @param server - an `http` or `https` server (HTTP/2 has no upgrade)
 * @param fetch - the app's fetch, `app.fetch`
 * @param options - see {@link WebSocketOptions}
 * @returns the server's WebSockets; `shutdown()` also closes `server`
 */
export function attach(server: ServerType, fetch: FetchCallback, options: WebSocketOptions = {}) {
  port.installAdapter(adapter)
  return new Attachment(server, fetch, options, hub) as WebSockets
}

/**
 * Starts a Node server for a Hono app, WebSockets included, on `@hono/node-server`, and resolves
 * once it listens (it rejects when it cannot). The server is a hub of its own. It listens on
 * 127.0.0.1 unless `hostname` says otherwise, on port 3000 unless `port` does, and without
 * `onListen` prints where (`Listening on http://127.0.0.1:3000/`), as on Bun and Deno.
 *
 * @example
 * ```ts
 * const server = await serve(app, { port: 3000 })
 * process.on('SIGTERM', () => server.shutdown())
 * ```
 */
export async function serve(
  app: port.FetchApp,
  options: ServeOptions = {},
): Promise<HandshakeServer> {
  const { perMessageDeflate, shouldHandle, onListen, ...serverOptions } = options
  const own = port.createHub()
  const fetch = ((request: Request, env: Record<PropertyKey, unknown>) =>
    app.fetch(
      request,
      Object.assign(env, { [port.HUB]: own }) as never,
    )) as unknown as FetchCallback
  const server = createAdaptorServer({
    ...serverOptions,
    fetch,
  } as unknown as NodeServerOptions) as Server
  port.installAdapter(adapter)
  const websockets = new Attachment(server, fetch, { perMessageDeflate, shouldHandle }, own)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 3000, options.hostname ?? '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  const { address: hostname, port: at } = server.address() as AddressInfo
  const stop = (o?: ShutdownOptions) => websockets.shutdown(o)
  return port.hubServer(own, server, { hostname, port: at }, stop, onListen)
}
