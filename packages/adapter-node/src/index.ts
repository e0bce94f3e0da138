/**
 * Handshake on Node: `ws` on `@hono/node-server`. Each server of {@link serve} is a hub: `getHub(c)`
 * in the app's routes and `conn.hub` are its own. The README says how each option and each core
 * bound maps onto ws and `node:http`.
 * @module
 */
import { once } from 'node:events'
import { type IncomingMessage, type Server, STATUS_CODES } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import type { ZlibOptions } from 'node:zlib'
import type { Hub, ShutdownOptions } from '@handshake/core'
import * as port from '@handshake/core/adapter'
import { createAdaptorServer, type ServerType } from '@hono/node-server'
import { WebSocket, WebSocketServer } from 'ws'

export type { ShutdownOptions } from '@handshake/core'
export type { FetchApp } from '@handshake/core/adapter'

/** permessage-deflate settings (RFC 7692), as ws takes them (declared here: no `@types/ws`). */
export interface PerMessageDeflateOptions {
  /** Whether the server resets its compression context after each message. */
  serverNoContextTakeover?: boolean
  /** Whether the client is asked to reset its compression context after each message. */
  clientNoContextTakeover?: boolean
  /** The server's LZ77 window size, as a power of two (8 to 15). */
  serverMaxWindowBits?: number
  /** The client's LZ77 window size, as a power of two (8 to 15). */
  clientMaxWindowBits?: number
  /** zlib options for compressing (a dictionary as a `Buffer` or `DataView`). */
  zlibDeflateOptions?: Omit<ZlibOptions, 'dictionary'> & { dictionary?: Buffer | DataView }
  /** zlib options for decompressing. */
  zlibInflateOptions?: ZlibOptions
  /** Messages smaller than this many bytes are sent uncompressed. @defaultValue 1024 */
  threshold?: number
  /** How many zlib operations may run at once. @defaultValue 10 */
  concurrencyLimit?: number
}

/** The WebSocket options of {@link serve} and {@link attach}. */
export interface WebSocketOptions {
  /** permessage-deflate: `true` for ws's defaults, or its options. @defaultValue false */
  perMessageDeflate?: boolean | PerMessageDeflateOptions
  /** Which `upgrade` events this server answers (the others go to other listeners). */
  shouldHandle?: (incoming: IncomingMessage) => boolean
}

type NodeServerOptions = Parameters<typeof createAdaptorServer>[0]
type WithoutWebSocket<T> = T extends unknown ? Omit<T, 'websocket'> : never

/**
 * Options of {@link serve}: `@hono/node-server`'s (`port`, `hostname`, `serverOptions`,
 * `createServer`...) but `fetch` and `websocket`, the {@link WebSocketOptions}, and `onListen`
 * (called with the address once it listens, instead of printing it). `hostname` defaults to
 * `'127.0.0.1'`, as on Bun and Deno.
 */
export type ServeOptions = Omit<WithoutWebSocket<NodeServerOptions>, 'fetch'> &
  WebSocketOptions & { onListen?: (address: port.ServerAddress) => void }

/** A Node server started by {@link serve}: its own hub, its address and its shutdown. */
export type HandshakeServer = port.HandshakeServer<ServerType>

/** The WebSocket side of a server given to {@link attach}: the package's {@link hub}. */
export interface WebSockets extends Hub {
  /** How many WebSocket connections are open. */
  readonly size: number
  /** Shuts down gracefully, as `HandshakeServer.shutdown` does, and closes the server. */
  shutdown(options?: ShutdownOptions): Promise<void>
  /** Stops answering the server's `upgrade` events. Open connections are left as they are. */
  detach(): void
}

/** `c.env` of an upgrade request: `@hono/node-server`'s `HttpBindings`, with no `outgoing`. */
export interface UpgradeBindings {
  /** The request as Node parsed it. */
  incoming: IncomingMessage
  /** Always undefined: Node gives no `ServerResponse` for an upgrade. */
  outgoing: undefined
}

/** The app's fetch, as `app.fetch` is: it is called once per upgrade request. */
export type FetchCallback = (request: Request, env: UpgradeBindings) => unknown

// ws marks a protocol fault's error with the close code it calls for, under a private symbol
// (`kStatusCode` in ws/lib/constants.js). Should a release rename it, the public `WS_ERR_*` code
// names the fault: 1002 but for these (ws/lib/receiver.js). A network error has neither.
const WS_ERR: Record<string, number> = { INVALID_UTF8: 1007, TOO_MANY_BUFFERED_PARTS: 1008 }
for (const name of ['MESSAGE', 'DATA_PAYLOAD']) WS_ERR[`UNSUPPORTED_${name}_LENGTH`] = 1009

// The network socket's drain finds its WebSocket here: a closure per connection would cost
// every idle one about 100 bytes.
const SOCKET = Symbol('handshake.node.socket')

const wsSend = WebSocket.prototype.send as (this: unknown, data: unknown, cb?: () => void) => void
const wsPing = WebSocket.prototype.ping as (this: unknown) => void
const Base = WebSocket as unknown as new () => Omit<WebSocket, 'send' | 'ping'>

/**
 * The core's socket is ws's own WebSocket (ws makes this subclass, by its `WebSocket` option), so
 * an idle connection costs no wrapper; the listeners below are shared by every connection.
 */
class WsSocket extends Base implements port.RuntimeSocket {
  events: port.SocketEvents | undefined
  raw: (Duplex & { [SOCKET]?: WsSocket }) | undefined
  compressed = false
  #onSent: (() => void) | undefined

  get emitsDrain(): boolean {
    return true
  }

  /** Opens the core's side of the upgraded socket, exactly once, and forwards its events. */
  open(raw: Duplex, request: port.UpgradeRequest): void {
    this.raw = raw
    this.compressed = this.extensions.includes('permessage-deflate')
    this.events = request.open(this)
    ;(raw as { [SOCKET]?: WsSocket })[SOCKET] = this
    this.on('message', onMessage as never)
    // Without it, the first bad frame would throw from an EventEmitter and crash the process;
    // ws sends the close frame for the fault itself.
    this.on('error', onError as never)
    this.on('close', onClose as never)
    raw.on('drain', onDrain)
  }

  send(data: string | Uint8Array): boolean | undefined {
    // ws writes a view without copying it, and send() resolves before the network takes it:
    // copy, so that a caller reusing its buffer cannot change a message in flight.
    const payload = typeof data === 'string' ? data : Buffer.from(data)
    if (this.compressed) {
      // ws queues messages while it compresses them, out of the network socket's sight, so its
      // drain can come before that queue empties: each send's callback reports it too.
      this.#onSent ??= () => this.events?.drain()
      wsSend.call(this, payload, this.#onSent)
      return undefined
    }
    const raw = this.raw as Duplex
    port.corkForTurn(raw)
    wsSend.call(this, payload)
    // Under the socket's own high-water mark there is no back-pressure to look at.
    return raw.writableNeedDrain
  }

  ping(): void {
    // Pongs only matter once a ping was sent: most connections never listen for them.
    if (this.listenerCount('pong') === 0) this.on('pong', onPong as never)
    wsPing.call(this)
  }
}

function onMessage(this: WsSocket, data: Buffer, isBinary: boolean): void {
  this.events?.message(isBinary ? port.ownBytes(data) : data.toString('utf8'))
}
function onPong(this: WsSocket): void {
  this.events?.pong()
}
function onError(this: WsSocket, error: Error & { code?: unknown }): void {
  const key = Object.getOwnPropertySymbols(error).find((s) => s.description === 'status-code')
  const marked = key && (error as unknown as Record<symbol, unknown>)[key]
  const name = typeof error.code === 'string' ? /^WS_ERR_(\w+)$/.exec(error.code)?.[1] : undefined
  const named = name ? (WS_ERR[name] ?? 1002) : undefined
  this.events?.error(error, typeof marked === 'number' ? marked : named)
}
function onDrain(this: { [SOCKET]?: WsSocket }): void {
  this[SOCKET]?.events?.drain()
}
function onClose(this: WsSocket, code: number, reason: Buffer): void {
  this.raw?.off('drain', onDrain)
  // ws reports 1006 exactly when no close frame came from the peer (a peer cannot send 1006:
  // ws fails such a frame with 1002), so the code says whether one was received.
  this.events?.closed(code, reason.toString('utf8'), code !== 1006)
}

/** The default hub: that of {@link attach}'s servers, and of requests that came through none. */
export const hub: Hub = port.createHub()

/** The Node adapter, installed by {@link serve} and {@link attach}: ws writes the real 101. */
export const adapter: port.Adapter = {
  name: 'node',
  hub: () => hub,
  upgrade: port.deferredUpgrade(
    "This upgrade did not come through @handshake/node: serve the app with `serve` from '@handshake/node', or `attach` it to your server, and pass its `env` on to app.fetch",
  ),
}

// What each accepted request's 101 carries, which ws asks for by the request as it writes it:
// kept per request, not in shared state, so that no order of upgrades can mix two answers up.
const answers = new WeakMap<IncomingMessage, { protocol: string | false; headers: string[] }>()
const chosenProtocol = (_: Set<string>, request: IncomingMessage) =>
  answers.get(request)?.protocol ?? false
const addHeaders = (headers: string[], request: IncomingMessage) =>
  void headers.push(...(answers.get(request)?.headers ?? []))
const EMPTY = Buffer.alloc(0)

/** Answers the `upgrade` events of `server` into the hub `own`: what attach() and serve() share. */
function attachTo(server: Server, fetch: FetchCallback, options: WebSocketOptions, own: Hub) {
  const settings = {
    noServer: true,
    clientTracking: false,
    perMessageDeflate: options.perMessageDeflate ?? false,
    // The core chose the subprotocol; ws would otherwise take the client's first.
    handleProtocols: chosenProtocol,
    WebSocket: WsSocket as unknown as typeof WebSocket,
  }
  // One ws server per message size limit (each route has its own; ws reads it from its options
  // as it takes the socket, and refuses a bigger message as it arrives).
  const servers = new Map<number, WebSocketServer>()
  const serverFor = (maxPayload: number) => {
    const wss = servers.get(maxPayload) ?? new WebSocketServer({ ...settings, maxPayload })
    if (!servers.has(maxPayload)) servers.set(maxPayload, wss.on('headers', addHeaders))
    return wss
  }
  const upgrades = new port.RawUpgrades(
    {
      fetch: fetch as port.RawUpgradeRuntime['fetch'],
      passOn: () => server.listenerCount('upgrade') > 1,
      shouldHandle: options.shouldHandle as port.RawUpgradeRuntime['shouldHandle'],
      complete(accepted, headers, head, socket) {
        const [incoming, raw] = [head as IncomingMessage, socket as Duplex]
        answers.set(incoming, { protocol: accepted.protocol ?? false, headers })
        let opened = false
        // ws completes at once (it has no verifyClient), or gives up on a socket no longer
        // readable and writable.
        serverFor(accepted.maxMessageSize).handleUpgrade(incoming, raw, EMPTY, (ws) => {
          opened = true
          answers.delete(incoming)
          ;(ws as unknown as WsSocket).open(raw, accepted)
        })
        return opened
      },
    },
    STATUS_CODES,
  )
  const onUpgrade = (incoming: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const env = { incoming, outgoing: undefined, [port.HUB]: own }
    upgrades.answer(incoming as port.RawHead, socket as port.RawSocket, head, env)
  }
  server.on('upgrade', onUpgrade)
  // The server's own close, kept from before a graceful shutdown runs: it stops listening.
  const close = server.close.bind(server)
  const websockets: WebSockets = {
    topics: own.topics,
    connections: own.connections,
    get size() {
      return own.connections.size
    },
    detach: () => void server.off('upgrade', onUpgrade),
    async shutdown(shutdownOptions) {
      await upgrades.shutdown(own.connections, shutdownOptions, (done) => close(() => done()))
      server.closeAllConnections?.()
    },
  }
  return websockets
}

/**
 * Answers the WebSocket upgrades of a server you made yourself through your Hono app, and
 * leaves other `upgrade` listeners working (see {@link WebSocketOptions.shouldHandle}). Its
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
 */
export function attach(
  server: ServerType,
  fetch: FetchCallback,
  options: WebSocketOptions = {},
): WebSockets {
  port.installAdapter(adapter)
  return attachTo(server as Server, fetch, options, hub)
}

/**
 * Starts a Node server for a Hono app, WebSockets included, on `@hono/node-server`: a hub of its
 * own. It resolves once it listens (on 127.0.0.1:3000 unless told otherwise), and rejects when
 * it cannot; without `onListen` it prints where, as on Bun and Deno.
 */
export async function serve(
  app: port.FetchApp,
  options: ServeOptions = {},
): Promise<HandshakeServer> {
  const { perMessageDeflate, shouldHandle, onListen, ...serverOptions } = options
  const own = port.createHub()
  const fetch = port.withHub(app, own) as FetchCallback
  const server = createAdaptorServer({ ...serverOptions, fetch } as never) as Server
  port.installAdapter(adapter)
  const websockets = attachTo(server, fetch, { perMessageDeflate, shouldHandle }, own)
  // Rejects with the server's error (a port in use) when it comes before 'listening'.
  await once(server.listen(options.port ?? 3000, options.hostname ?? '127.0.0.1'), 'listening')
  const { address: hostname, port: at } = server.address() as AddressInfo
  return port.hubServer(own, server, { hostname, port: at }, websockets.shutdown, onListen)
}
