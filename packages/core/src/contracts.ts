/**
 * The contracts a controller implements: `serve`, plus optional hooks, each its own interface.
 * @module
 */
import type { Context, Env, Hono, MiddlewareHandler } from 'hono'
import type { CloseError } from './close.js'
import type { Conn } from './conn.js'

/**
 * Serves one WebSocket connection. It is Goyave's `websocket.Controller`.
 *
 * `serve` runs once the connection is upgraded, after the HTTP middleware has returned. It
 * usually reads in a loop: `for await (const msg of conn) { ... }`. When it settles, the
 * upgrader performs the close handshake, unless `serve` already did with `conn.close()`:
 *
 * - it returned: close 1000 with {@link NormalClosureMessage};
 * - it threw a normal close ({@link isCloseError}): close 1000;
 * - it threw anything else: `onError`, or the logger, then close 1011.
 *
 * `serve` must not return before the work it started is done: the connection is closed as soon
 * as it returns. Use `conn.signal` to stop that work when the connection closes.
 *
 * @example
 * ```ts
 * class Echo implements Controller {
 *   async serve(conn: Conn) {
 *     for await (const msg of conn) await conn.send(msg.data)
 *   }
 * }
 * app.get('/ws', upgrade(new Echo()))
 * ```
 */
// biome-ignore lint/suspicious/noExplicitAny: the default matches Hono's own `Context` default
export interface Controller<E extends Env = any> {
  /**
   * Serves the connection. A throw or a rejection is the error.
   * @param conn - the upgraded connection
   * @param c - the Hono context of the upgrade request
   */
  // biome-ignore lint/suspicious/noConfusingVoidType: a handler may return any promise (`return conn.subscribe(topic)`)
  serve(conn: Conn, c: Context<E>): void | Promise<unknown>
}

/**
 * A controller that handles the errors of its own `serve`. Goyave's `ErrorHandler`.
 *
 * Called for every error `serve` throws or rejects with, except normal closes
 * ({@link isCloseError}). Without it, the error is logged with its stack at the error level.
 * An error thrown here is logged, and the connection is still closed with 1011.
 *
 * `c` is the upgrade's own context (headers, middleware variables, `env`), kept for the
 * connection's life only when the controller has `onError` as `serve` starts. One added to the
 * controller after that gets, for that connection, a context rebuilt from `conn.url`, whose
 * `c.req.header()` throws (as an event controller's after `open`).
 */
// biome-ignore lint/suspicious/noExplicitAny: see Controller
export interface ErrorHandler<E extends Env = any> {
  onError(c: Context<E>, err: unknown): void | Promise<void>
}

/**
 * Headers in any form `new Headers()` takes: a `Headers`, `[name, value]` pairs, or a record of
 * names to values. The DOM library's `HeadersInit`, declared here so that Handshake's types
 * compile without the DOM library (a Bun project with `lib: ["ESNext"]`, Node with
 * `--lib esnext`).
 */
export type HeadersLike = Headers | [string, string][] | Record<string, string>

/**
 * A controller that adds headers to the `101 Switching Protocols` response. Goyave's
 * `HeaderUpgrader`. They reach the client on every runtime, except that Bun writes the 101
 * before middleware resumes (see the runtime table in the README).
 *
 * The handshake's own headers are the core's: returning `Sec-WebSocket-Protocol`,
 * `Sec-WebSocket-Extensions`, `Sec-WebSocket-Accept`, `Upgrade` or `Connection` fails the
 * upgrade with 500 and a log line that says to use the `subprotocols` option instead.
 */
// biome-ignore lint/suspicious/noExplicitAny: see Controller
export interface HeaderUpgrader<E extends Env = any> {
  upgradeHeaders(c: Context<E>): HeadersLike | Promise<HeadersLike>
}

/**
 * A controller that decides which origins may connect. Goyave's `OriginChecker`.
 *
 * Without it, the safe default applies: a request whose `Origin` header is present and whose
 * host differs from the `Host` header is refused with 403. Validate origins carefully: browsers
 * send cookies with cross-site WebSocket upgrades, so a lax check invites cross-site hijacking.
 */
// biome-ignore lint/suspicious/noExplicitAny: see Controller
export interface OriginChecker<E extends Env = any> {
  checkOrigin(c: Context<E>): boolean | Promise<boolean>
}

/**
 * A controller that registers its own route, to add middleware, validation or a path. Goyave's
 * `Registrer`. The route must match GET only and use `handler`.
 */
// biome-ignore lint/suspicious/noExplicitAny: see Controller
export interface Registrer<E extends Env = any> {
  // biome-ignore lint/suspicious/noExplicitAny: any schema and base path
  registerRoute(app: Hono<E, any, any>, handler: MiddlewareHandler<E>): void
}

/**
 * A controller that answers failed upgrades itself. Goyave's `UpgradeErrorHandler`.
 *
 * Without it, the answer is JSON `{"error": "<status text>"}`, or `{"error": "<reason>"}` when
 * `debug` is on. `Sec-WebSocket-Version: 13` is added to whatever this returns.
 */
// biome-ignore lint/suspicious/noExplicitAny: see Controller
export interface UpgradeErrorHandler<E extends Env = any> {
  onUpgradeError(c: Context<E>, status: number, reason: Error): Response | Promise<Response>
}

/** The optional hooks every kind of controller may implement. */
// biome-ignore lint/suspicious/noExplicitAny: see Controller
export type Hooks<E extends Env = any> = Partial<
  ErrorHandler<E> & HeaderUpgrader<E> & OriginChecker<E> & Registrer<E> & UpgradeErrorHandler<E>
>

/**
 * A controller with any of the optional hooks, as {@link upgrade} takes it. Classes can
 * `implements Controller, ErrorHandler, ...`; object literals get the hooks typed here.
 */
// biome-ignore lint/suspicious/noExplicitAny: see Controller
export type ControllerWithHooks<E extends Env = any> = Controller<E> & Hooks<E>

/**
 * The second kind of controller: handlers called per event instead of a read loop. It is the
 * kind that survives a Cloudflare Durable Object's hibernation, and it skips the read loop's
 * promise per message on every runtime.
 *
 * - `open(conn, c)` runs once the connection is upgraded, after the HTTP handler returned. The
 *   Hono context `c` is valid here only: keep what you need in `conn.data`.
 * - `message(conn, msg)` runs per message. The handlers of one connection never overlap: when
 *   a handler returns a promise, the next message waits for it to settle, and the inbound bound
 *   (`maxInboundBuffer`) and back-pressure hold as they do for `serve`.
 * - `close(conn, err)` runs once when the connection has closed, after any handler in flight,
 *   with the {@link CloseError} the connection ended with.
 *
 * Errors map to close codes exactly as for `serve`: a throw or rejection in `open` or `message`
 * goes to `onError` (or the logger), then closes with 1011; a normal close error
 * ({@link isCloseError}) closes with 1000. An error from `close` is reported and nothing else.
 *
 * `conn.data` holds the connection's small state (`Data`, a structured clone of at most 2 KiB in
 * workerd's serialization: see {@link Conn.data}). Assign it;
 * do not mutate it in place: the assignment is what is stored with the socket, and after a
 * hibernation only what was stored comes back. The test kit's `hibernatable()` drops all memory
 * between events, so a controller that keeps state in its own fields fails its tests.
 *
 * @example
 * ```ts
 * const room: EventController<{ name: string }> = {
 *   open(conn, c) {
 *     conn.data = { name: c.req.query('name') ?? 'anonymous' }
 *     conn.subscribe('lobby')
 *   },
 *   message(conn, msg) {
 *     conn.publish('lobby', `${conn.data.name}: ${msg.data}`)
 *   },
 * }
 * app.get('/ws', upgrade(room))
 * ```
 */
// biome-ignore lint/suspicious/noExplicitAny: see Controller
export interface EventController<Data = any, E extends Env = any> {
  /**
   * The connection is open. `c` is the upgrade request's context, valid during this call.
   * @param conn - the connection
   * @param c - the Hono context of the upgrade request
   */
  // biome-ignore lint/suspicious/noConfusingVoidType: a handler may return any promise (`return conn.subscribe(topic)`)
  open?(conn: Conn<Data>, c: Context<E>): void | Promise<unknown>
  /**
   * A message arrived. The next one waits until this one's promise settles.
   * @param conn - the connection
   * @param message - the message: text as a string, binary as the exact bytes
   */
  // biome-ignore lint/suspicious/noConfusingVoidType: a handler may return any promise (`return conn.subscribe(topic)`)
  message(conn: Conn<Data>, message: Message): void | Promise<unknown>
  /**
   * The connection has closed, by either side; called once, after the other handlers.
   * @param conn - the connection, now closed: sends reject, `conn.data` is still readable
   * @param error - how it ended: the peer's code, a fault's, or 1006 for a vanished peer
   */
  // biome-ignore lint/suspicious/noConfusingVoidType: a handler may return any promise (`return conn.subscribe(topic)`)
  close?(conn: Conn<Data>, error: CloseError): void | Promise<unknown>
}

/** An {@link EventController} with any of the optional hooks, as {@link upgrade} takes it. */
// biome-ignore lint/suspicious/noExplicitAny: see Controller
export type EventControllerWithHooks<Data = any, E extends Env = any> = EventController<Data, E> &
  Hooks<E>

/** Either kind of controller, with its hooks. */
// biome-ignore lint/suspicious/noExplicitAny: see Controller
export type AnyController<E extends Env = any> =
  | ControllerWithHooks<E>
  | EventControllerWithHooks<unknown, E>

/** Tells an {@link EventController} from a `serve` {@link Controller}. */
// biome-ignore lint/suspicious/noExplicitAny: see Controller
export function isEventController<E extends Env = any>(
  controller: AnyController<E>,
  // biome-ignore lint/suspicious/noExplicitAny: any data
): controller is EventControllerWithHooks<any, E> {
  return typeof (controller as { serve?: unknown }).serve !== 'function'
}

/** A message read from a connection. */
export type Message =
  | { readonly type: 'text'; readonly data: string }
  | { readonly type: 'binary'; readonly data: Uint8Array }

/** The data a connection can send: text, or the exact bytes of a view. */
export type MessageData = string | Uint8Array

/** Where the upgrader reports errors. The console fits. */
export interface Logger {
  error(...args: unknown[]): void
}

/** What a connection does with published messages once the peer falls behind. */
export type SlowSubscriberPolicy = 'close' | 'drop'

/** Options of {@link Upgrader} and {@link upgrade}. Every field has a default. */
export interface UpgradeOptions {
  /**
   * How long `close()` waits for the peer's close frame, in milliseconds, before it tears the
   * connection down. 0 or less means no wait. Each connection can change its own with
   * `conn.setCloseHandshakeTimeout()`.
   * @defaultValue 10000
   */
  closeHandshakeTimeout?: number
  /**
   * Puts error messages in upgrade-error bodies and in 1011 close reasons. Never in production:
   * it tells clients about your server.
   * @defaultValue false
   */
  debug?: boolean
  /**
   * The subprotocols the server speaks, most preferred first. The first of these that the client
   * offers is chosen and echoed; when none matches, none is chosen and the upgrade goes on.
   * @defaultValue []
   */
  subprotocols?: readonly string[]
  /**
   * The largest message accepted, in bytes. A bigger one closes the connection with 1009.
   * @defaultValue 1048576 (1 MiB)
   */
  maxMessageSize?: number
  /**
   * How many bytes of received messages may wait for `serve` to read them. Past this, the
   * socket is paused where the runtime can (Node, Bun); elsewhere the connection closes with
   * 1008. Each waiting message also counts {@link MESSAGE_OVERHEAD_BYTES}, so floods of tiny
   * messages are bounded too. It must hold one whole message: at least `maxMessageSize` plus
   * {@link MESSAGE_OVERHEAD_BYTES}, or the upgrader refuses the options.
   * @defaultValue 4194304 (4 MiB)
   */
  maxInboundBuffer?: number
  /**
   * `conn.send()` resolves at once while the runtime holds at most this many unsent bytes;
   * above it, it waits until the runtime drains below it. This is how a slow peer slows `serve`
   * down instead of growing memory.
   * @defaultValue 1048576 (1 MiB)
   */
  sendHighWaterMark?: number
  /**
   * Where errors from `serve` and `onError` are logged when the controller has no `onError`.
   * @defaultValue console
   */
  logger?: Logger
  /**
   * Whether a `serve` that fails because the peer vanished (a `CloseError` with 1006: a closed
   * laptop, a lost network) is logged when the controller has no `onError`. It is not the
   * controller's fault, so by default it is not logged; `onError` still receives it.
   * @defaultValue false
   */
  logAbnormalCloses?: boolean
  /**
   * The most bytes a subscriber's runtime may hold unsent before a published message counts as
   * one it cannot keep up with. Publishing never waits on a subscriber; past this bound,
   * {@link UpgradeOptions.slowSubscriber} decides.
   * @defaultValue 4194304 (4 MiB)
   */
  maxPublishBuffer?: number
  /**
   * What happens to a subscriber past {@link UpgradeOptions.maxPublishBuffer}: `'close'` closes
   * it with 1008 and a reason that says why; `'drop'` drops the message for it and counts it in
   * `conn.droppedMessages` (a subscriber recovering from a position is also sent a gap notice
   * and answered `recovered: false`). The other subscribers never slow down.
   * @defaultValue 'close'
   */
  slowSubscriber?: SlowSubscriberPolicy
  /**
   * The most topics one connection may hold at once. A client that names its rooms decides how
   * many it joins, and each costs memory here and a subscription on the backplane: past this
   * bound, `conn.subscribe()` rejects with a `RangeError` and nothing changes.
   * @defaultValue 128
   */
  maxTopicsPerConnection?: number
  /**
   * The longest topic name `conn.subscribe()` and `conn.publish()` accept, in UTF-8 bytes. A
   * longer one is refused with a `RangeError` (`subscribe()` rejects, `publish()` throws) and
   * nothing changes.
   * @defaultValue 256
   */
  maxTopicLength?: number
}

/** {@link UpgradeOptions} with every default applied. */
export type UpgradeSettings = Required<UpgradeOptions>

/** The per-message cost added to its size when bounding inbound data. */
export const MESSAGE_OVERHEAD_BYTES = 64

/** The defaults of {@link UpgradeOptions}. */
export const defaultSettings: Readonly<UpgradeSettings> = Object.freeze({
  closeHandshakeTimeout: 10_000,
  debug: false,
  subprotocols: [],
  maxMessageSize: 1024 * 1024,
  maxInboundBuffer: 4 * 1024 * 1024,
  sendHighWaterMark: 1024 * 1024,
  logger: console,
  logAbnormalCloses: false,
  maxPublishBuffer: 4 * 1024 * 1024,
  slowSubscriber: 'close',
  maxTopicsPerConnection: 128,
  maxTopicLength: 256,
})
