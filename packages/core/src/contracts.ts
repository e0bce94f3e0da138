/**
 * The contracts a controller implements: `serve`, plus optional hooks, each its own interface.
 * @module
 */
import type { Context, Env, Hono, MiddlewareHandler } from 'hono'
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
  serve(conn: Conn, c: Context<E>): void | Promise<void>
}

/**
 * A controller that handles the errors of its own `serve`. Goyave's `ErrorHandler`.
 *
 * Called for every error `serve` throws or rejects with, except normal closes
 * ({@link isCloseError}). Without it, the error is logged with its stack at the error level.
 * An error thrown here is logged, and the connection is still closed with 1011.
 */
// biome-ignore lint/suspicious/noExplicitAny: see Controller
export interface ErrorHandler<E extends Env = any> {
  onError(c: Context<E>, err: unknown): void | Promise<void>
}

/**
 * A controller that adds headers to the `101 Switching Protocols` response. Goyave's
 * `HeaderUpgrader`. Deno ignores them (see the runtime table in the README).
 */
// biome-ignore lint/suspicious/noExplicitAny: see Controller
export interface HeaderUpgrader<E extends Env = any> {
  upgradeHeaders(c: Context<E>): HeadersInit | Promise<HeadersInit>
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

/**
 * A controller with any of the optional hooks, as {@link upgrade} takes it. Classes can
 * `implements Controller, ErrorHandler, ...`; object literals get the hooks typed here.
 */
// biome-ignore lint/suspicious/noExplicitAny: see Controller
export type ControllerWithHooks<E extends Env = any> = Controller<E> &
  Partial<
    ErrorHandler<E> & HeaderUpgrader<E> & OriginChecker<E> & Registrer<E> & UpgradeErrorHandler<E>
  >

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
   * socket is paused where the runtime can (Node); elsewhere the connection closes with 1008.
   * Each waiting message also counts {@link MESSAGE_OVERHEAD_BYTES}, so floods of tiny
   * messages are bounded too.
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
})
