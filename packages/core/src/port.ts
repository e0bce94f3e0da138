/**
 * The adapter port: the small interface through which a runtime hands the core its sockets.
 *
 * An adapter implements {@link Adapter} and installs it with {@link installAdapter}. The core
 * validates the upgrade, then calls `adapter.upgrade(c, request)`. The adapter answers with the
 * runtime's 101 response and, once the socket is open, calls `request.open(socket)` exactly once,
 * then forwards the socket's events to the {@link SocketEvents} it gets back. All behaviour (the
 * close handshake, bounds, errors) lives in the core; an adapter only translates.
 * @module
 */
import type { Context } from 'hono'
import type { Hub } from './hub.js'
import type { PresenceMeta } from './presence.js'
import type { serializedSize } from './serialized.js'
import type { TopicTree } from './topics.js'

/** The runtime's socket, as the adapter exposes it to the core. */
export interface RuntimeSocket {
  /**
   * Queues one message. Must send exactly the bytes of the view, not its whole buffer.
   *
   * It may say whether the runtime signalled back-pressure: `false` when it took the data with
   * none (the core then skips reading `bufferedAmount`, a native call on some runtimes), `true`
   * when it did. Return nothing when the runtime cannot tell.
   */
  // biome-ignore lint/suspicious/noConfusingVoidType: adapters that cannot tell return nothing
  send(data: string | Uint8Array): boolean | void
  /**
   * Sends a close frame and lets the runtime finish the close handshake. The core only passes
   * codes that may be sent, never 1005 or 1006.
   */
  close(code: number, reason: string): void
  /** Bytes queued by the runtime and not yet written to the network. */
  readonly bufferedAmount: number
  /**
   * What `bufferedAmount` can be at most, where reading it is a native call and the adapter
   * keeps this bound for nothing (its last reading plus the bytes sent since). The core reads
   * `bufferedAmount` only when this bound is past the limit it checks. Absent: it always reads.
   */
  readonly bufferedAtMost?: number
  /**
   * True when the adapter calls {@link SocketEvents.drain} as the runtime drains its buffer.
   * When false, the core polls `bufferedAmount` with a backing-off timer instead.
   */
  readonly emitsDrain: boolean
  /** Destroys the connection at once, with no close frame. Absent where the runtime cannot. */
  terminate?(): void
  /** Stops reading from the network. Absent where the runtime cannot pause a socket. */
  pause?(): void
  /** Starts reading from the network again after {@link RuntimeSocket.pause}. */
  resume?(): void
  /** Sends a ping frame. Absent where the runtime cannot send pings. */
  ping?(): void
  /**
   * The runtime's own topic tree this socket belongs to (Bun's server). When present, the core
   * fans topics out through it, with {@link RuntimeSocket.subscribe}, {@link RuntimeSocket.unsubscribe}
   * and {@link RuntimeSocket.publish}, instead of sending to each subscriber itself.
   */
  readonly tree?: TopicTree
  /** Subscribes this socket in the runtime's tree. Present with {@link RuntimeSocket.tree}. */
  subscribe?(topic: string): void
  /** Unsubscribes this socket in the runtime's tree. Present with {@link RuntimeSocket.tree}. */
  unsubscribe?(topic: string): void
  /** Publishes through the runtime's tree to every subscriber but this socket. */
  publish?(topic: string, data: string | Uint8Array): void
  /**
   * Stores what the connection must get back after the runtime drops the isolate's memory (a
   * Durable Object's hibernation): called whenever `conn.data` or the topics change.
   */
  persist?(snapshot: ConnSnapshot): void
  /**
   * True when the runtime finishes the close handshake itself and reports the end whenever it
   * comes (the Hibernation API): the core then arms no close timer, which would keep the
   * object awake.
   */
  readonly closesHandshake?: boolean
}

/**
 * What a connection keeps across a hibernation: enough to rebuild its `Conn` when the runtime
 * wakes the isolate for the socket's next event. It is structured-cloneable (`conn.data` is
 * checked on assignment, see {@link serializedSize}); store it with a structured clone, not
 * JSON, so that a `Map` or a `Date` in `conn.data` comes back as one.
 */
export interface ConnSnapshot {
  /** The chosen subprotocol, or `''`. */
  readonly protocol: string
  /** The upgrade request's URL. */
  readonly url: string
  /** `conn.data`, as last assigned. */
  readonly data: unknown
  /** The topics the connection subscribes to. */
  readonly topics: readonly string[]
  /**
   * The connection's presence, when it is a member of a topic: its member id (kept across a
   * hibernation) and its metadata per topic (each topic also in {@link ConnSnapshot.topics}).
   */
  readonly presence?: {
    readonly id: string
    readonly topics: Readonly<Record<string, PresenceMeta>>
  }
}

/** The core's side of a socket: the adapter calls these as the runtime's events arrive. */
export interface SocketEvents {
  /** A whole message arrived: a string for text, the exact bytes for binary. */
  message(data: string | Uint8Array): void
  /**
   * The connection has ended. `code` is the peer's close code, 1005 when its close frame had
   * none, or 1006 when it ended without a close frame. `wasClean` says whether a close frame
   * was received from the peer; when omitted, it is taken as `code !== 1006`. Calling it more
   * than once is harmless.
   */
  closed(code: number, reason: string, wasClean?: boolean): void
  /**
   * The runtime reported a fault. `code` is the close code the fault calls for (1002 for a
   * protocol error, 1007 for invalid UTF-8, 1009 for an oversized frame), when known.
   */
  error(error: Error, code?: number): void
  /** The runtime's send buffer drained (only when `emitsDrain` is true). */
  drain(): void
  /** A pong arrived. */
  pong(): void
  /**
   * Settles once `serve` has finished and the connection is closed, by any path (including the
   * core's teardown at the close timeout, which a runtime without `terminate` never reports).
   * Never rejects. Hand it to `waitUntil` where the runtime would otherwise stop the work.
   */
  readonly ended: Promise<void>
}

/** What the core asks of an adapter for one validated upgrade. */
export interface UpgradeRequest {
  /** Headers to add to the 101 response (from the controller's `upgradeHeaders`). Read only. */
  readonly headers: Headers
  /** The chosen subprotocol, to echo in `Sec-WebSocket-Protocol`; undefined when none. */
  readonly protocol: string | undefined
  /** The largest message accepted, in bytes, for runtimes that can refuse bigger frames. */
  readonly maxMessageSize: number
  /**
   * The upgrader's `maxPublishBuffer`, in bytes: a runtime that drops messages past a send limit
   * of its own (Bun's `backpressureLimit`) must keep that limit above it, or a slow subscriber
   * loses messages instead of being closed.
   */
  readonly maxPublishBuffer: number
  /** The upgrade request's URL. */
  readonly url: string
  /**
   * Call once the socket is open and can send, exactly once. Returns the handlers to forward the
   * socket's events to. Events that happened before the call are lost, so call it first thing.
   * The controller starts after the HTTP handler has returned, never inside this call.
   */
  open(socket: RuntimeSocket): SocketEvents
  /**
   * Call instead of {@link UpgradeRequest.open} when the socket will never open (the peer left
   * during the handshake, the app's answer was not the upgrade's). Until one of the two is
   * called, the upgrade counts as on its way, and a graceful shutdown waits for it (until its
   * deadline). Calling it after `open`, or twice, does nothing.
   */
  abandon(): void
  /**
   * True when the controller is an event controller, whose sockets may hibernate (a Durable
   * Object accepts them through the Hibernation API).
   */
  readonly events: boolean
}

/** A runtime adapter. */
export interface Adapter {
  /** The runtime's name, for messages: `'node'`, `'bun'`, `'deno'`, `'workers'`. */
  readonly name: string
  /**
   * Upgrades a validated request and returns the response that completes it (the runtime's 101).
   * A throw becomes a 500 upgrade error.
   */
  upgrade(c: Context, request: UpgradeRequest): Response | Promise<Response>
  /**
   * The hub of a request whose Hono `env` names none under `HUB`: the adapter's default hub
   * (that of its short form), or, on Bun, the hub of the server that took the request. An
   * adapter's `serve` puts its server's hub in the `env` of each request instead.
   */
  hub(c: Context): Hub
}

/**
 * The key under which an adapter is installed on `globalThis`, or passed in the Hono `env` of one
 * request (`app.fetch(req, { [ADAPTER]: adapter })`), which wins over the global one.
 */
export const ADAPTER: unique symbol = Symbol.for('handshake.adapter') as never

/**
 * Installs the runtime's adapter for every upgrade of this process or isolate. Adapters call it
 * when they are imported or when their `serve` starts; apps never need to.
 */
export function installAdapter(adapter: Adapter): void {
  ;(globalThis as { [ADAPTER]?: Adapter })[ADAPTER] = adapter
}

/** The adapter for this request: the one in `c.env`, else the installed one. */
export function adapterFor(c: Context): Adapter | undefined {
  const env = c.env as { [ADAPTER]?: Adapter } | undefined
  return (
    (env && typeof env === 'object' ? env[ADAPTER] : undefined) ??
    (globalThis as { [ADAPTER]?: Adapter })[ADAPTER]
  )
}

/** The error for a request that reaches `upgrade()` with no adapter installed. */
export function missingAdapterError(): Error {
  const agent = typeof navigator === 'undefined' ? '' : navigator.userAgent
  const hint = agent.includes('Bun')
    ? "`import { websocket } from '@handshake/bun'` and pass it in the options of Bun's serve"
    : agent.includes('Deno')
      ? "`import '@handshake/deno'` in your entry file"
      : agent.includes('Cloudflare-Workers')
        ? "`import '@handshake/workers'` in your Worker's entry file"
        : "serve the app with `serve` from '@handshake/node'"
  return new Error(
    `No Handshake adapter is installed for this runtime: ${hint}. The packages are @handshake/node, @handshake/bun, @handshake/deno and @handshake/workers.`,
  )
}
