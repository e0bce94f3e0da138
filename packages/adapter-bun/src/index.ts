/**
 * `@handshake/bun`: Handshake on `Bun.serve`, whose short form is
 * `export default { fetch: app.fetch, websocket }`, and {@link serve}. Each Bun server is a hub
 * of its own. The README says how each option and each core bound maps onto Bun.
 * @module
 */
import { CloseCode, type Hub, InternalErrorMessage, type ShutdownOptions } from '@handshake/core'
import * as port from '@handshake/core/adapter'
import type { Serve, Server, ServerWebSocket, WebSocketHandler } from 'bun'
import type { Context } from 'hono'

export type { ShutdownOptions } from '@handshake/core'
export type { FetchApp as Fetchable } from '@handshake/core/adapter'

/** Options of the `websocket` handler object: the per-server settings of Bun's WebSockets. */
export interface WebSocketOptions {
  /** Bun's `maxPayloadLength`: the largest `maxMessageSize` of the routes. @defaultValue 1 MiB */
  maxMessageSize?: number
  /** Seconds of silence before Bun closes a connection (0 to 960; 0 never). @defaultValue 120 */
  idleTimeout?: number
  /** Whether Bun pings quiet clients before `idleTimeout`. @defaultValue true */
  sendPings?: boolean
  /** permessage-deflate for what clients send (Bun's own option). @defaultValue false */
  perMessageDeflate?: WebSocketHandler<unknown>['perMessageDeflate']
  /** Bytes Bun may queue on a connection: above every `maxPublishBuffer`. @defaultValue 5 MiB */
  backpressureLimit?: number
}

/**
 * Options of {@link serve}: Bun's own server options, the {@link WebSocketOptions} and
 * `onListen`. `hostname` defaults to `'127.0.0.1'`, as on Node and Deno (Bun's own is every
 * interface).
 */
export interface ServeOptions
  extends Omit<Serve.HostnamePortServeOptions<HandshakeSocketData>, 'unix'> {
  /** The WebSocket settings of this server. */
  websocket?: WebSocketOptions
  /** Called once the server listens, with its address, instead of printing it. */
  onListen?: (addr: { hostname: string; port: number }) => void
}

type BunServer = Server<HandshakeSocketData>
type BunSocket = ServerWebSocket<HandshakeSocketData>

/** A Bun server started by {@link serve}: its hub, its address and its shutdown. */
export type HandshakeServer = port.HandshakeServer<BunServer>

declare const LINK: unique symbol
/** The `ws.data` of a Handshake socket (opaque); sockets with other data are left alone. */
export interface HandshakeSocketData {
  readonly [LINK]: true
}

/**
 * One connection: the core's socket over Bun's, with its part in the server's topic tree. It is
 * the socket's `data` itself: one object per connection, with no closure of its own.
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
    /** The server's topic tree: the server itself. */
    readonly tree: port.TopicTree,
  ) {}
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
    this.events?.error(new Error('Bun dropped a message: over backpressureLimit bytes were queued'))
    ws.terminate()
    return undefined
  }
  // Bun writes the close frame and a FIN, and reports the end before returning.
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

/** An entry mistake, named with the way to serve an app on Bun. */
const entryError = (what: string, cause?: unknown) =>
  new Error(
    `${what}: \`import { websocket } from '@handshake/bun'\` and serve with \`export default { fetch: app.fetch, websocket }\` (or \`Bun.serve({ fetch: app.fetch, websocket })\`), or start the app with \`serve(app)\` from '@handshake/bun'.`,
    { cause },
  )

/** The Bun server in the Hono env: Bun's fetch gets it, and Hono's helpers `{ server }`. */
function bunServerOf(env: unknown): BunServer | undefined {
  const isServer = (v: unknown) => typeof (v as { upgrade?: unknown })?.upgrade === 'function'
  const nested = (env as { server?: unknown } | undefined)?.server
  return isServer(env) ? (env as BunServer) : isServer(nested) ? (nested as BunServer) : undefined
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
      throw entryError(
        'The Bun server is missing from the Hono env (c.env): Bun passes it as the second argument of fetch, so hand it on with `app.fetch(request, server)`',
      )
    }
    // The server is its own topic tree: the core publishes once per server, Bun to each socket.
    const link = new Link(request, server)
    // Bun echoes the client's first offer when no protocol is chosen; an empty header stops it
    // and is not sent (oven-sh/bun#18243). With nothing to add, no header list is built.
    const offered = request.protocol === undefined && !!c.req.header('sec-websocket-protocol')
    const headers = port.handshakeHeadersIfAny(request, offered ? '' : request.protocol)
    let upgraded: boolean
    try {
      upgraded = server.upgrade(c.req.raw, { data: link as never, headers })
    } catch (err) {
      if (!String(err).includes('websocket')) throw err
      throw entryError('Bun.serve was started without a `websocket` handler', err)
    }
    if (!upgraded) throw new Error(`Bun refused the upgrade: ${REFUSED}`)
    if (link.refused) throw link.refused
    // Bun runs the `open` handler inside server.upgrade(): if ours did not run, the server
    // uses another `websocket` object, and nothing would ever serve this connection.
    if (!link.events)
      throw entryError('The `websocket` of Bun.serve is not the one from @handshake/bun')
    // Bun already wrote the real 101; this one is for middleware that looks at the response.
    if (offered) headers?.delete('Sec-WebSocket-Protocol')
    return new Response(null, { status: 101, headers })
  },
}

port.installAdapter(adapter)

const REFUSED = `server.upgrade() returned false: the request was already upgraded, or is not the one Bun passed to fetch`

const linkOf = (ws: BunSocket) => (ws.data instanceof Link ? ws.data : undefined)

// The close code a protocol fault calls for: Bun sends it to the client, but reports every fault
// to the `close` handler as 1006 with a reason that starts "Received".
function faultCode(code: number, reason: string): number | undefined {
  if (code !== 1006 || !reason.startsWith('Received ')) return undefined
  if (/UTF-8|compressed/.test(reason)) return 1007
  if (reason.includes('too big message')) return 1009
  if (reason.includes('does not fit in memory')) return 1011
  return 1002
}

// The core's default maxPublishBuffer plus 1 MiB; Bun's own 16 MiB let a peer hold 16 MiB of pongs.
const DEFAULT_BACKPRESSURE_LIMIT = port.defaultSettings.maxPublishBuffer + 1024 * 1024

/**
 * Makes the `websocket` handler object for `Bun.serve` with other per-server settings than
 * {@link websocket}'s: `websocket: createWebSocketHandler({ idleTimeout: 60 })`.
 */
export function createWebSocketHandler(
  options: WebSocketOptions = {},
): WebSocketHandler<HandshakeSocketData> {
  const { maxMessageSize, backpressureLimit, idleTimeout, sendPings, perMessageDeflate } = options
  // Only these reach Bun: another of its options from an untyped caller (`publishToSelf`,
  // `closeOnBackpressureLimit`) would undo what the core relies on.
  const named = Object.entries({ idleTimeout, sendPings, perMessageDeflate })
  const bunOptions = Object.fromEntries(named.filter(([, value]) => value !== undefined))
  const limits: port.RuntimeLimits = {
    names: ["Bun's maxPayloadLength", "Bun's backpressureLimit"],
    maxMessageSize: maxMessageSize ?? port.defaultSettings.maxMessageSize,
    sendLimit: backpressureLimit ?? DEFAULT_BACKPRESSURE_LIMIT,
    raiseMessageLimit: `pass the largest maxMessageSize to createWebSocketHandler({ maxMessageSize }) or serve(app, { websocket: { maxMessageSize } })`,
    raiseSendLimit: `raise backpressureLimit above it with createWebSocketHandler({ backpressureLimit }) or serve(app, { websocket: { backpressureLimit } })`,
  }
  return {
    ...bunOptions,
    maxPayloadLength: limits.maxMessageSize,
    backpressureLimit: limits.sendLimit,
    open(ws) {
      const link = linkOf(ws)
      const request = link?.request
      if (!link || !request) return
      // Bun's default Buffer may be a view of a pooled buffer; a Uint8Array is the message.
      ws.binaryType = 'uint8array'
      link.refused = port.checkRuntimeLimits(request, limits)
      if (link.refused) {
        request.abandon()
        return ws.close(CloseCode.InternalError, InternalErrorMessage)
      }
      link.ws = ws
      link.request = undefined
      link.events = request.open(link)
    },
    message(ws, message) {
      // Copied (when it is a view of a pooled buffer) only for a connection that takes it.
      const events = linkOf(ws)?.events
      events?.message(typeof message === 'string' ? message : port.ownBytes(message as Uint8Array))
    },
    drain(ws) {
      linkOf(ws)?.events?.drain()
    },
    pong(ws) {
      linkOf(ws)?.events?.pong()
    },
    close(ws, code, reason) {
      const link = linkOf(ws)
      if (!link || link.closed) return
      link.closed = true
      const fault = faultCode(code, reason)
      if (fault !== undefined) link.events?.error(new Error(reason), fault)
      // A peer's close frame came only if it closed first: after ours Bun reports the end at once.
      link.events?.closed(code, reason, !link.closeSent && code !== 1006)
    },
  }
}

/**
 * The `websocket` handler object to give `Bun.serve`, with the default settings;
 * {@link createWebSocketHandler} changes them. `export default { fetch: app.fetch, websocket }`.
 */
export const websocket: WebSocketHandler<HandshakeSocketData> = createWebSocketHandler()

/**
 * Shuts a server started with `Bun.serve` and the {@link websocket} handler down gracefully, as
 * `HandshakeServer.shutdown` does (see the README), with "stop listening" being `server.stop()`;
 * at `options.timeout` it stops for good (`server.stop(true)`). Other servers are not affected.
 */
export async function shutdown(server: BunServer, options?: ShutdownOptions): Promise<void> {
  const deadline = port.shutdownDeadline(options)
  await port.hubOf(server).connections.shutdown(options, () => server.stop())
  // Bun ends each connection once its close frame and FIN are written, maybe not yet read:
  // stopping for good now could reset them and destroy the close frame. Wait for the deadline.
  await port.atDeadline(deadline, () => server.stop(true))
}

/**
 * Starts `Bun.serve` with the app and the Handshake `websocket` handler, and resolves to the
 * server: a hub of its own, with its address and a graceful `shutdown()`. It listens on
 * 127.0.0.1 unless `hostname` says otherwise, and prints where unless `onListen` is given:
 * `const server = await serve(app, { port: 3000 })`.
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
