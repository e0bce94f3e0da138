/**
 * Handshake on Node: `ws` on `@hono/node-server`.
 *
 * ```ts
 * import { serve } from '@handshake/node'
 * import { app } from './app.js'
 *
 * const server = await serve(app, { port: 3000, hostname: '127.0.0.1' })
 * process.on('SIGTERM', () => server.shutdown())
 * ```
 *
 * Each server is a hub: `getHub(c)` in the app's routes and `conn.hub` are its topics and
 * connections.
 * @module
 */
import type { IncomingMessage, Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import type { ZlibOptions } from 'node:zlib'
import type { Hub, ShutdownOptions } from '@handshake/core'
import {
  type Adapter,
  type HandshakeServer as CoreServer,
  createHub,
  HUB,
  installAdapter,
  type ServerAddress,
  type UpgradeRequest,
} from '@handshake/core/adapter'
import { createAdaptorServer, type ServerType } from '@hono/node-server'
import type { Context } from 'hono'
import { WebSocketServer } from 'ws'
import { toRequest, writeResponse } from './http.js'
import { openConnection } from './socket.js'

export type { ShutdownOptions } from '@handshake/core'

// --- types ---

/**
 * permessage-deflate settings (RFC 7692), as `ws` takes them. Declared here so that this
 * package's types need no `@types/ws`.
 */
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
   * permessage-deflate compression (RFC 7692), as `ws` takes it: `true` for its defaults, or its
   * `PerMessageDeflateOptions`. It costs CPU and memory per connection, so it is off unless set.
   * @defaultValue false
   */
  perMessageDeflate?: boolean | PerMessageDeflateOptions
  /**
   * Which requests of the server's `upgrade` event this server answers. The others are left
   * untouched for the server's other `upgrade` listeners. By default every request is
   * answered, except that a 404 from the app is left to the other listeners when there are any.
   * @defaultValue every request
   */
  shouldHandle?: (incoming: IncomingMessage) => boolean
}

type NodeServerOptions = Parameters<typeof createAdaptorServer>[0]
type WithoutWebSocket<T> = T extends unknown ? Omit<T, 'websocket'> : never

/**
 * Options of {@link serve}: those of `@hono/node-server`'s `serve` (`port`, `hostname`,
 * `serverOptions`, `createServer`...) except `fetch` (the app's) and its own `websocket`, plus
 * {@link WebSocketOptions} and `onListen`. `hostname` defaults to `'127.0.0.1'` here, as in the
 * Bun and Deno adapters' `serve`: pass `'0.0.0.0'` (or `'::'`) to listen on every interface.
 */
export type ServeOptions = Omit<WithoutWebSocket<NodeServerOptions>, 'fetch'> &
  WebSocketOptions & {
    /**
     * Called once the server listens, with its address (the real port when `port` is 0).
     * @defaultValue prints `Listening on http://<hostname>:<port>/`, as Bun's and Deno's do
     */
    onListen?: (address: ServerAddress) => void
  }

/** The app {@link serve} serves: a Hono app, or anything with the same `fetch`. */
export interface FetchApp {
  fetch(request: Request, env: never): unknown
}

/** A Node server started by {@link serve}: its own hub, its address and its shutdown. */
export type HandshakeServer = CoreServer<ServerType>

/**
 * The WebSocket side of a server given to {@link attach}: the hub its connections join (the
 * package's {@link hub}), and the graceful shutdown.
 */
export interface WebSockets extends Hub {
  /** How many WebSocket connections are open. */
  readonly size: number
  /**
   * Shuts down gracefully: the core's `Connections.shutdown`, with "stop listening" being
   * `server.close()`. Every open connection gets one close frame (1001 `Server shutting down`
   * by default), new upgrades get 503, and it resolves by `timeout` (10 s by default) whatever
   * the peers or the app do: what is left then (connections, requests still being answered) is
   * destroyed. It rejects with a `RangeError`, before anything is closed, when `code` or
   * `reason` may not be sent.
   */
  shutdown(options?: ShutdownOptions): Promise<void>
  /** Stops answering the server's `upgrade` events. Open connections are left as they are. */
  detach(): void
}

/**
 * What `c.env` holds for an upgrade request, like `@hono/node-server`'s `HttpBindings` but with
 * no `outgoing`: Node gives no `ServerResponse` for an upgrade.
 */
export interface UpgradeBindings {
  /** The request as Node parsed it. */
  incoming: IncomingMessage
  /** Always undefined for an upgrade request. */
  outgoing: undefined
}

/** The app's fetch, as `app.fetch` is: it is called once per upgrade request. */
export type FetchCallback = (request: Request, env: UpgradeBindings) => unknown

// --- adapter ---

/** Where the adapter finds, in `c.env`, the upgrade request it answers. */
const PENDING = Symbol('handshake.node.pending')

interface PendingUpgrade {
  accepted?: UpgradeRequest
}

/**
 * The default hub: that of {@link attach}'s servers, and of requests that came through no
 * server of {@link serve}.
 */
export const hub: Hub = createHub()

/**
 * The Node adapter. {@link serve} and {@link attach} install it; it needs the request to come
 * through one of them. It accepts the upgrade and answers with a placeholder response carrying
 * the 101's headers: once the app has answered, `ws` writes the real 101.
 */
export const adapter: Adapter = {
  name: 'node',
  hub: () => hub,
  upgrade(c: Context, request: UpgradeRequest): Response {
    const env = c.env as { [PENDING]?: PendingUpgrade } | undefined
    const pending = env && typeof env === 'object' ? env[PENDING] : undefined
    if (!pending) {
      throw new Error(
        "This upgrade did not come through @handshake/node: serve the app with `serve` from '@handshake/node', or `attach` it to your server, and pass its `env` on to app.fetch",
      )
    }
    if (pending.accepted) throw new Error('upgrade() ran twice for one request')
    pending.accepted = request
    const headers = new Headers(request.headers)
    if (request.protocol !== undefined) headers.set('Sec-WebSocket-Protocol', request.protocol)
    return new Response(null, { headers })
  },
}

// ws writes these on the 101 itself.
const HANDSHAKE_HEADERS = new Set([
  'connection',
  'upgrade',
  'sec-websocket-accept',
  'sec-websocket-extensions',
  'sec-websocket-protocol',
  'content-length',
  'content-type',
  'transfer-encoding',
  'keep-alive',
])

const ignore = () => {}

class Attachment implements WebSockets {
  readonly topics: Hub['topics']
  readonly connections: Hub['connections']
  readonly #server: ServerType
  readonly #fetch: FetchCallback
  readonly #options: WebSocketOptions
  readonly #wsServers = new Map<number, WebSocketServer>()
  readonly #handshakes = new WeakMap<
    IncomingMessage,
    { headers: string[]; protocol: string | undefined }
  >()
  // Upgrade requests the app is still answering: destroyed when a shutdown's deadline passes.
  readonly #answering = new Set<Duplex>()
  readonly #close: Server['close']

  constructor(server: ServerType, fetch: FetchCallback, options: WebSocketOptions, own: Hub) {
    this.topics = own.topics
    this.connections = own.connections
    this.#server = server
    this.#fetch = fetch
    this.#options = options
    // The server's own close: serve() replaces server.close with the graceful shutdown.
    this.#close = (server as Server).close.bind(server)
    server.on('upgrade', this.#onUpgrade)
  }

  get size(): number {
    return this.connections.size
  }

  detach(): void {
    this.#server.off('upgrade', this.#onUpgrade)
  }

  async shutdown(options?: ShutdownOptions): Promise<void> {
    // close() calls back once every socket has closed, upgraded ones included, or at once
    // with an error when the server was not listening: either way the deadline bounds it.
    let stopped = false
    await this.connections.shutdown(options, () => {
      stopped = true
      return new Promise((done) => this.#close(done))
    })
    // Another attach()'s shutdown already shut the hub they share, and stopped only its own
    // server: this one stops now, its connections being closed already.
    if (!stopped) this.#close(ignore)
    // The deadline passed or everything closed: whatever is left is torn down, including the
    // upgrade requests the app is still answering.
    for (const socket of this.#answering) socket.destroy()
    ;(this.#server as Server).closeAllConnections?.()
  }

  readonly #onUpgrade = (incoming: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const { shouldHandle } = this.#options
    if (shouldHandle) {
      let handled: boolean
      try {
        handled = shouldHandle(incoming)
      } catch (err) {
        // A throw from an event listener would crash the process.
        console.error('shouldHandle failed:', err)
        socket.destroy()
        return
      }
      if (!handled) return
    }
    // From here until ws takes the socket, a reset by the client must not crash the process.
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
    let request: Request
    try {
      // Its signal aborts the app's work when the client goes away.
      request = toRequest(incoming)
    } catch {
      return writeResponse(socket, new Response(null, { status: 400 }), method)
    }
    const pending: PendingUpgrade = {}
    const env = { incoming, outgoing: undefined, [PENDING]: pending, [HUB]: this as Hub }
    let response: unknown
    try {
      response = await this.#fetch(request, env)
    } catch (err) {
      console.error(err)
      response = new Response(null, { status: 500 })
    }
    if (!(response instanceof Response)) response = new Response(null, { status: 500 })
    const answer = response as Response
    const accepted = pending.accepted
    // `c.env` lives as long as the connection: it need not keep the core's request object.
    pending.accepted = undefined
    if (socket.destroyed) {
      // The client left while the app answered: the socket never opens.
      accepted?.abandon()
      await answer.body?.cancel().catch(ignore)
      return
    }
    if (accepted && answer.status === 200) {
      this.#complete(incoming, socket, head, accepted, answer)
      return
    }
    // The app's answer is not the upgrade's (middleware rewrote it): no socket opens.
    accepted?.abandon()
    // A path the app does not route may belong to another `upgrade` listener.
    if (!accepted && answer.status === 404 && this.#server.listenerCount('upgrade') > 1) return
    return writeResponse(socket, answer, method)
  }

  /** Writes the 101 through ws, with the headers of the app's answer, and opens the connection. */
  #complete(
    incoming: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    accepted: UpgradeRequest,
    answer: Response,
  ): void {
    const headers: string[] = []
    for (const [name, value] of answer.headers) {
      if (name !== 'set-cookie' && !HANDSHAKE_HEADERS.has(name)) headers.push(`${name}: ${value}`)
    }
    for (const cookie of answer.headers.getSetCookie()) headers.push(`set-cookie: ${cookie}`)
    this.#handshakes.set(incoming, { headers, protocol: accepted.protocol })
    let opened = false
    this.#wsServerFor(accepted.maxMessageSize).handleUpgrade(incoming, socket, head, (ws) => {
      opened = true
      openConnection(ws, socket, accepted)
    })
    // ws completes at once, or gives up on a socket that is no longer readable and writable.
    if (!opened) accepted.abandon()
  }

  /** One `ws` server per message size limit, since ws sets `maxPayload` per server. */
  #wsServerFor(maxPayload: number): WebSocketServer {
    let wss = this.#wsServers.get(maxPayload)
    if (wss) return wss
    wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload,
      perMessageDeflate: this.#options.perMessageDeflate ?? false,
      // The core chose the subprotocol; ws would otherwise take the client's first.
      handleProtocols: (_offered, incoming) => this.#handshakes.get(incoming)?.protocol ?? false,
    })
    wss.on('headers', (headers, incoming) => {
      const handshake = this.#handshakes.get(incoming)
      if (!handshake) return
      this.#handshakes.delete(incoming)
      headers.push(...handshake.headers)
    })
    this.#wsServers.set(maxPayload, wss)
    return wss
  }
}

// --- entry points ---

/**
 * Answers the WebSocket upgrades of a server you made yourself, through your Hono app.
 *
 * It listens to the server's `upgrade` event: it turns each request into a web `Request`,
 * calls `fetch` (your `app.fetch`), and either completes the upgrade that `upgrade()` accepted
 * or writes the app's answer on the socket (a refusal, a 404, any route's response).
 * Other `upgrade` listeners keep working: see {@link WebSocketOptions.shouldHandle}.
 *
 * @example
 * ```ts
 * import { createServer } from 'node:http'
 * import { getRequestListener } from '@hono/node-server'
 * import { attach } from '@handshake/node'
 *
 * const server = createServer(getRequestListener(app.fetch))
 * const websockets = attach(server, app.fetch)
 * server.listen(3000, '127.0.0.1')
 * process.on('SIGTERM', () => websockets.shutdown())
 * ```
 *
 * Its connections join the package's default {@link hub}, which `getHub(c)` also returns in the
 * server's HTTP routes (they come through your listener, which names no hub).
 * @param server - an `http` or `https` server (HTTP/2 has no upgrade)
 * @param fetch - the app's fetch, `app.fetch`
 * @param options - see {@link WebSocketOptions}
 * @returns the server's WebSockets; `shutdown()` also closes `server`
 */
export function attach(
  server: ServerType,
  fetch: FetchCallback,
  options: WebSocketOptions = {},
): WebSockets {
  installAdapter(adapter)
  return new Attachment(server, fetch, options, hub)
}

/**
 * Starts a Node server for a Hono app, WebSockets included, on `@hono/node-server`, and resolves
 * once it listens. The server is a hub of its own: `getHub(c)` in the app's routes, and
 * `conn.hub`, are its topics and connections.
 *
 * It listens on 127.0.0.1 unless `hostname` says otherwise, and without `onListen` it prints
 * where it listens (`Listening on http://127.0.0.1:3000/`), as the Bun and Deno adapters'
 * `serve` do.
 *
 * @example
 * ```ts
 * const server = await serve(app, { port: 3000, hostname: '127.0.0.1' })
 * console.log(`ws://${server.address.hostname}:${server.address.port}/ws`)
 * process.on('SIGTERM', () => server.shutdown())
 * ```
 * @param app - the Hono app (anything with its `fetch`)
 * @param options - `port` (default 3000), `hostname` (default `'127.0.0.1'`), `onListen`, and
 *   {@link WebSocketOptions}
 * @returns the server, once it listens; it rejects when it cannot listen
 */
export async function serve(app: FetchApp, options: ServeOptions = {}): Promise<HandshakeServer> {
  const { perMessageDeflate, shouldHandle, onListen, ...serverOptions } = options
  const own = createHub()
  const fetch = ((request: Request, env: Record<PropertyKey, unknown>) => {
    env[HUB] = own
    return app.fetch(request, env as never)
  }) as unknown as FetchCallback
  const server = createAdaptorServer({
    ...serverOptions,
    fetch,
  } as unknown as NodeServerOptions) as Server
  installAdapter(adapter)
  const websockets = new Attachment(server, fetch, { perMessageDeflate, shouldHandle }, own)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 3000, options.hostname ?? '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  const { address, port } = server.address() as AddressInfo
  if (onListen) onListen({ hostname: address, port })
  else console.log(`Listening on http://${hostOf(address)}:${port}/`)
  return {
    address: { hostname: address, port },
    server,
    topics: own.topics,
    connections: own.connections,
    async shutdown(shutdownOptions?: ShutdownOptions) {
      await websockets.shutdown(shutdownOptions)
      // The hub's backplane goes with it: its connections to the engine would keep the
      // process alive.
      await own.topics.closeBackplane()
    },
  }
}

/** An address as a URL writes it: an IPv6 one in brackets. */
function hostOf(address: string): string {
  return address.includes(':') ? `[${address}]` : address
}
