/**
 * `@handshake/bun`: runs Handshake controllers on `Bun.serve`. The short form:
 *
 * ```ts
 * import { websocket } from '@handshake/bun'
 * import { app } from './app'
 *
 * export default { fetch: app.fetch, websocket }
 * ```
 *
 * {@link serve} is the long one, the same on Node, Bun and Deno:
 * `const server = await serve(app, { port: 3000 })`. Importing the package installs the
 * adapter. Each upgrade calls `server.upgrade()` with data that links the Bun socket to its own
 * `Conn`, so one server hosts any number of controllers on any number of routes, all through
 * the one {@link websocket} handler object. Each Bun server is a hub of its own, whichever form
 * started it: `getHub(c)` and `conn.hub` are its topics and connections, and its topics fan out
 * through its own tree only.
 * @module
 */
import { CloseCode, type Hub, InternalErrorMessage, type ShutdownOptions } from '@handshake/core'
import * as port from '@handshake/core/adapter'
import type { Serve, Server, ServerWebSocket, WebSocketHandler } from 'bun'
import type { Context } from 'hono'

export type { ShutdownOptions } from '@handshake/core'
export type { FetchApp as Fetchable } from '@handshake/core/adapter'

/** Options of the `websocket` handler object, the per-server settings of Bun's WebSockets. */
export interface WebSocketOptions {
  /**
   * The largest message Bun accepts, in bytes; Bun sets `maxPayloadLength` to it. Bun refuses a
   * bigger message itself, with close code 1009, before it is buffered in full. Bun applies it
   * to the whole server, while each upgrader has its own `maxMessageSize`: set this to the
   * largest `maxMessageSize` of your routes (smaller limits still apply per route, in the core).
   * @defaultValue 1048576 (1 MiB, the core's default `maxMessageSize`)
   */
  maxMessageSize?: number
  /**
   * Seconds a connection may stay silent before Bun closes it (0 to 960; 0 disables it). Bun
   * pings a quiet client shortly before, unless {@link WebSocketOptions.sendPings} is false.
   * @defaultValue 120
   */
  idleTimeout?: number
  /** Whether Bun pings quiet clients before {@link WebSocketOptions.idleTimeout}. @defaultValue true */
  sendPings?: boolean
  /**
   * permessage-deflate, negotiated with clients that offer it (Bun's own option). Handshake
   * never asks Bun to compress an outgoing message, so it only affects what clients send.
   * @defaultValue false
   */
  perMessageDeflate?: WebSocketHandler<unknown>['perMessageDeflate']
  /**
   * Bytes Bun may queue on one connection. Past it Bun drops a send, which Handshake treats as a
   * broken connection and tears down, and drops published messages and its own pongs. It bounds
   * what a peer that never reads costs: one that only sends pings makes Bun queue pongs up to
   * it. It must be above every upgrader's `maxPublishBuffer` (4 MiB by default), where the core
   * closes a slow subscriber with 1008: a connection on a route whose `maxPublishBuffer` is at
   * or above it is refused, with a `RangeError` in the log that says which option to change.
   * `conn.send()` starts waiting for the peer far below it, at the upgrader's
   * `sendHighWaterMark` (1 MiB by default).
   * @defaultValue 5242880 (5 MiB: the core's default `maxPublishBuffer`, plus 1 MiB)
   */
  backpressureLimit?: number
}

/**
 * Options of {@link serve}: Bun's own server options, plus the WebSocket ones (see
 * {@link WebSocketOptions}) and `onListen` (called with the address once it listens; by default
 * it prints it). `hostname` defaults to `'127.0.0.1'` (Bun's own default is every interface), as
 * on Node and Deno: pass `'0.0.0.0'` to listen on every interface.
 */
export interface ServeOptions
  extends Omit<Serve.HostnamePortServeOptions<HandshakeSocketData>, 'unix'> {
  /** The WebSocket settings of this server. */
  websocket?: WebSocketOptions
  /** Called once the server listens, with its address (the real port when `port` is 0). */
  onListen?: (addr: { hostname: string; port: number }) => void
}

type BunServer = Server<HandshakeSocketData>
type BunSocket = ServerWebSocket<HandshakeSocketData>

/** A Bun server started by {@link serve}: its hub, its address and its shutdown. */
export type HandshakeServer = port.HandshakeServer<BunServer>

const LINK: unique symbol = Symbol.for('handshake.bun.link') as never

/**
 * The `ws.data` of a Handshake socket: what `server.upgrade()` carries from the upgrade to the
 * handlers. Opaque; sockets upgraded by other code carry their own data and are left alone.
 */
export interface HandshakeSocketData {
  readonly [LINK]: Link
}

/**
 * One connection: its state, shared by the upgrade and the handlers, and the core's socket over
 * Bun's, with its part in the server's topic tree. One object per connection, carried as the
 * socket's `data` itself, where a plain socket object with a closure per method, a link and a
 * wrapper for `data` cost every idle connection about 500 bytes.
 */
class Link implements port.RuntimeSocket {
  /** Bun's socket, once open. */
  ws: BunSocket | undefined
  events: port.SocketEvents | undefined
  /** Our close frame went out: Bun reports the end at once, with no answer from the peer. */
  closeSent = false
  closed = false
  /** Why the `open` handler refused the connection: the upgrade throws it. */
  refused: RangeError | undefined

  constructor(
    /** The core's upgrade request, until the socket opens. */
    public request: port.UpgradeRequest | undefined,
    /** The server's topic tree (see {@link treeOf}). */
    readonly tree: port.TopicTree,
  ) {}

  /** `ws.data` is the link itself: it is its own {@link HandshakeSocketData}. */
  get [LINK](): Link {
    return this
  }

  get emitsDrain(): boolean {
    return true
  }

  send(data: string | Uint8Array): boolean | undefined {
    const ws = this.ws as BunSocket
    const status = typeof data === 'string' ? ws.sendText(data) : ws.sendBinary(data)
    // > 0: sent; -1: queued under back-pressure, the core then reads the buffered amount.
    if (status > 0) return false
    if (status === -1) return true
    // 0 means dropped, except for an empty message, which Bun sends and still reports as 0.
    const size = typeof data === 'string' ? data.length : data.byteLength
    if (size === 0 || this.closed || ws.readyState !== 1) return undefined
    // The end is reported inside send(), so the core rejects this send with it.
    this.events?.error(
      new Error('Bun dropped a message: more than backpressureLimit bytes were queued'),
    )
    ws.terminate()
    return undefined
  }

  // Bun writes the close frame and a FIN, and reports the end before returning: close()
  // never waits for the peer's answer on Bun (see the runtime table).
  close(code: number, reason: string): void {
    this.closeSent = true
    this.ws?.close(code, reason)
  }

  get bufferedAmount(): number {
    return this.closed ? 0 : (this.ws?.getBufferedAmount() ?? 0)
  }

  terminate(): void {
    this.ws?.terminate()
  }

  pause(): void {
    this.ws?.pause()
  }

  resume(): void {
    if (!this.closed) this.ws?.resume()
  }

  ping(): void {
    this.ws?.ping()
  }

  // The socket's part in its server's tree: `ws.publish` reaches every subscriber but `ws`.

  subscribe(topic: string): void {
    this.ws?.subscribe(topic)
  }

  unsubscribe(topic: string): void {
    this.ws?.unsubscribe(topic)
  }

  publish(topic: string, data: string | Uint8Array): void {
    this.ws?.publish(topic, data)
  }
}

/** The hint given whenever the Bun server or its `websocket` handler is missing. */
const ENTRY_HINT =
  "`import { websocket } from '@handshake/bun'` and serve with `export default { fetch: app.fetch, websocket }` (or `Bun.serve({ fetch: app.fetch, websocket })`), or start the app with `serve(app)` from '@handshake/bun'"

/** The Bun server in the Hono env: Bun's fetch gets it, and Hono's helpers `{ server }`. */
function bunServerOf(env: unknown): BunServer | undefined {
  const isServer = (v: unknown) => typeof (v as { upgrade?: unknown })?.upgrade === 'function'
  if (!env || typeof env !== 'object') return undefined
  if (isServer(env)) return env as BunServer
  const nested = (env as { server?: unknown }).server
  return isServer(nested) ? (nested as BunServer) : undefined
}

/** The hub of requests with no Bun server (`app.request()` in a test); each server has its own. */
export const hub: Hub = port.createHub()

/** The Bun adapter. Installed when this module is imported; apps never need it directly. */
export const adapter: port.Adapter = {
  name: 'bun',
  hub(c: Context): Hub {
    const server = bunServerOf(c.env)
    return server ? port.hubOf(server) : hub
  },
  upgrade(c: Context, request: port.UpgradeRequest): Response {
    const server = bunServerOf(c.env)
    if (!server) {
      throw new Error(
        `The Bun server is missing from the Hono env (c.env): Bun passes it as the second argument of fetch, so hand it on with \`app.fetch(request, server)\`. ${ENTRY_HINT}.`,
      )
    }
    const link = new Link(request, treeOf(server))
    // Bun echoes the client's first offer when no protocol is set; an empty header stops it
    // and is not sent (oven-sh/bun#18243).
    const headers = port.handshakeHeaders(request, request.protocol ?? '')
    let upgraded: boolean
    try {
      upgraded = server.upgrade(c.req.raw, { data: link, headers })
    } catch (err) {
      if (!String(err).includes('websocket')) throw err
      const message = `Bun.serve was started without a \`websocket\` handler: ${ENTRY_HINT}.`
      throw new Error(message, { cause: err })
    }
    if (!upgraded) {
      throw new Error(
        'Bun refused the upgrade (server.upgrade returned false): the request was already upgraded, or it is not the original request Bun passed to fetch',
      )
    }
    if (link.refused) throw link.refused
    // Bun runs the `open` handler inside server.upgrade(): if ours did not run, the server
    // uses another `websocket` object, and nothing would ever serve this connection.
    if (!link.events) {
      throw new Error(
        `The \`websocket\` handler given to Bun.serve is not the one from @handshake/bun: ${ENTRY_HINT}.`,
      )
    }
    // Bun already wrote the real 101; this one is for middleware that looks at the response.
    if (request.protocol === undefined) headers.delete('Sec-WebSocket-Protocol')
    return new Response(null, { status: 101, headers })
  },
}

port.installAdapter(adapter)

function linkOf(ws: BunSocket): Link | undefined {
  const data: unknown = ws.data
  return data instanceof Link ? data : undefined
}

const trees = new WeakMap<BunServer, port.TopicTree>()

/**
 * The server's own topic tree, one per server: the core publishes once per tree with
 * `server.publish`, and Bun's native code writes to every subscribed socket. uWS drains a
 * socket's published messages before its next `send`, so they stay in order with `conn.send`.
 *
 * Bun sends without asking the core: the core checks each subscriber's buffered amount once per
 * turn of publishing and closes one past `maxPublishBuffer` with 1008, as on every runtime.
 * Bun's own `backpressureLimit` stays the hard stop above it: Bun drops a message only once a
 * socket holds more than that, which is more than `maxPublishBuffer` (the `open` handler
 * refuses a route where it is not), so the subscriber that lost one is closed at the end of
 * the turn. With `slowSubscriber: 'drop'` the core sends itself, since Bun's tree cannot count
 * what it drops.
 */
function treeOf(server: BunServer): port.TopicTree {
  let tree = trees.get(server)
  if (!tree) {
    tree = { publish: (topic, data) => void server.publish(topic, data) }
    trees.set(server, tree)
  }
  return tree
}

/**
 * The close code a protocol fault calls for. Bun sends that code to the client itself, but
 * reports every fault to the `close` handler as 1006 with a reason that starts "Received".
 */
function faultCode(code: number, reason: string): number | undefined {
  if (code !== 1006 || !reason.startsWith('Received ')) return undefined
  if (/UTF-8|compressed/.test(reason)) return 1007
  if (reason.includes('too big message')) return 1009
  if (reason.includes('does not fit in memory')) return 1011
  return 1002
}

/**
 * The default `backpressureLimit`: above the core's default `maxPublishBuffer` by 1 MiB, and far
 * below Bun's own 16 MiB, which let a peer that pings and never reads hold 16 MiB of pongs.
 */
const DEFAULT_BACKPRESSURE_LIMIT = port.defaultSettings.maxPublishBuffer + 1024 * 1024

/**
 * Makes the `websocket` handler object for `Bun.serve`, with the given per-server settings.
 * Use it instead of {@link websocket} to change them.
 *
 * @example
 * ```ts
 * export default {
 *   fetch: app.fetch,
 *   websocket: createWebSocketHandler({ maxMessageSize: 8 * 1024 * 1024, idleTimeout: 60 }),
 * }
 * ```
 */
export function createWebSocketHandler(
  options: WebSocketOptions = {},
): WebSocketHandler<HandshakeSocketData> {
  const maxPayloadLength = options.maxMessageSize ?? port.defaultSettings.maxMessageSize
  const backpressureLimit = options.backpressureLimit ?? DEFAULT_BACKPRESSURE_LIMIT
  let warned = false
  const handler: WebSocketHandler<HandshakeSocketData> = {
    maxPayloadLength,
    backpressureLimit,
    open(ws) {
      const link = linkOf(ws)
      const request = link?.request
      if (!link || !request) return
      // Bun's default Buffer may be a view of a pooled buffer; a Uint8Array is the message.
      ws.binaryType = 'uint8array'
      if (!warned && request.maxMessageSize > maxPayloadLength) {
        warned = true
        console.warn(
          `[@handshake/bun] A route allows messages of ${request.maxMessageSize} bytes, but Bun refuses any over ${maxPayloadLength} (maxPayloadLength): pass the largest maxMessageSize to createWebSocketHandler({ maxMessageSize }) or serve(app, { websocket: { maxMessageSize } }).`,
        )
      }
      if (request.maxPublishBuffer >= backpressureLimit) {
        // Bun would drop published messages before the core saw the subscriber as too slow.
        link.refused = new RangeError(
          `A route's maxPublishBuffer (${request.maxPublishBuffer} bytes) is not below Bun's backpressureLimit (${backpressureLimit} bytes), so a slow subscriber would lose messages instead of being closed with 1008: raise backpressureLimit above it with createWebSocketHandler({ backpressureLimit }) or serve(app, { websocket: { backpressureLimit } }), or lower that upgrader's maxPublishBuffer.`,
        )
        request.abandon()
        return ws.close(CloseCode.InternalError, InternalErrorMessage)
      }
      link.ws = ws
      link.request = undefined
      link.events = request.open(link)
    },
    message(ws, message) {
      const data = typeof message === 'string' ? message : port.ownBytes(message as Uint8Array)
      linkOf(ws)?.events?.message(data)
    },
    drain(ws) {
      linkOf(ws)?.events?.drain()
    },
    pong(ws) {
      linkOf(ws)?.events?.pong()
    },
    close(ws, code, reason) {
      const link = linkOf(ws)
      const events = link?.events
      if (!link || link.closed) return
      link.closed = true
      const fault = faultCode(code, reason)
      if (fault !== undefined) events?.error(new Error(reason), fault)
      // Bun gives no sign of the peer's close frame: one came only when the peer closed first,
      // since after our own close frame Bun reports the end at once, without reading an answer.
      events?.closed(code, reason, !link.closeSent && fault === undefined && code !== 1006)
    },
  }
  if (options.idleTimeout !== undefined) handler.idleTimeout = options.idleTimeout
  if (options.sendPings !== undefined) handler.sendPings = options.sendPings
  if (options.perMessageDeflate !== undefined) handler.perMessageDeflate = options.perMessageDeflate
  return handler
}

/**
 * The `websocket` handler object to give `Bun.serve`, with the default settings (Bun's, a
 * 1 MiB `maxPayloadLength` and a 5 MiB `backpressureLimit`); {@link createWebSocketHandler}
 * changes them. `export default { fetch: app.fetch, websocket }`.
 */
export const websocket: WebSocketHandler<HandshakeSocketData> = createWebSocketHandler()

/**
 * Shuts a Bun server down gracefully: its hub's `Connections.shutdown`, with "stop listening"
 * being `server.stop()`. New upgrades get 503, every open connection of this server gets one
 * close frame (1001 `Server shutting down` by default), and it resolves once every frame is
 * written. Bun then keeps each TCP connection until its peer answers; at `options.timeout` (10 s
 * by default) the server stops for good, dropping whatever is still open. It rejects with a
 * `RangeError`, before anything is closed, when `code` or `reason` may not be sent. Other
 * servers of the process are not affected. For a server started with `Bun.serve` and the
 * {@link websocket} handler; one started by {@link serve} has it as `server.shutdown()`.
 */
export async function shutdown(server: BunServer, options?: ShutdownOptions): Promise<void> {
  const deadline = port.shutdownDeadline(options)
  await port.hubOf(server).connections.shutdown(options, () => server.stop())
  // Bun reports each end as soon as its close frame and FIN are written, while the peer may not
  // have read them. Stopping for good now would close sockets holding unread data, and the
  // kernel would answer with a reset that can destroy the close frame: wait for the deadline.
  const left = deadline - Date.now()
  if (left > 0) setTimeout(() => void server.stop(true), left).unref()
  else await server.stop(true)
}

/**
 * Starts `Bun.serve` with the app and the Handshake `websocket` handler, and resolves to the
 * server: a hub of its own, with its address and a graceful `shutdown()`. The same
 * `serve(app, options)` as on Node and Deno. It listens on 127.0.0.1 unless `hostname` says
 * otherwise, and prints where (`Listening on http://127.0.0.1:3000/`) unless `onListen` is given.
 *
 * @example
 * ```ts
 * const server = await serve(app, { port: 3000, websocket: { idleTimeout: 60 } })
 * process.on('SIGTERM', () => server.shutdown())
 * ```
 */
export async function serve(
  app: port.FetchApp,
  options: ServeOptions = {},
): Promise<HandshakeServer> {
  const { websocket: websocketOptions, onListen, ...serveOptions } = options
  const hostname = serveOptions.hostname ?? '127.0.0.1'
  const server = Bun.serve({
    ...serveOptions,
    hostname,
    fetch: (request, server) => app.fetch(request, server as never),
    websocket: createWebSocketHandler(websocketOptions),
  } as Serve.Options<HandshakeSocketData>) as BunServer
  // The address it listens on: Bun's `server.hostname` says `localhost` for every interface.
  const address = { hostname, port: server.port ?? 0 }
  const stop = (o?: ShutdownOptions) => shutdown(server, o)
  return port.hubServer(port.hubOf(server), server, address, stop, onListen)
}
