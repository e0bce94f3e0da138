/**
 * The upgrade pipeline: validate the handshake, check the origin, hand the request to the
 * runtime's adapter, run `serve`, and close the connection by the rules of what `serve` did.
 * @module
 */
import { Context, type Env, type Hono, type MiddlewareHandler } from 'hono'
import { CloseCode, type CloseEnd, closeErrorIn, describeError, isCloseError } from './close.js'
import { Conn, type ConnHome } from './conn.js'
import {
  type AnyController,
  type ControllerWithHooks,
  defaultSettings,
  type EventControllerWithHooks,
  isEventController,
  MESSAGE_OVERHEAD_BYTES,
  type UpgradeOptions,
  type UpgradeSettings,
} from './contracts.js'
import type { EventDispatch } from './dispatch.js'
import { getHub, type Hub } from './hub.js'
import {
  CLOSED_HERE,
  DISPATCH_TO,
  EVENTS,
  READY,
  RESTORE,
  SETTLE_ENDED,
  SNAPSHOT,
  STOP_DISPATCH,
  UPGRADING,
  WAKE,
} from './internal.js'
import {
  adapterFor,
  type ConnSnapshot,
  missingAdapterError,
  type RuntimeSocket,
  type SocketEvents,
} from './port.js'
import { headerOf, NO_UPGRADE_HEADERS } from './serving.js'

/** An upgrade that cannot go on, with the HTTP status that answers it. */
export class UpgradeError extends Error {
  override readonly name = 'UpgradeError'
  /**
   * @param status - the HTTP status of the answer: 400, 403, 426, 500 or 503
   * @param message - what went wrong, shown in the body only when `debug` is on
   */
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  426: 'Upgrade Required',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
}

// The handshake's own headers: the core and the runtime write them, never upgradeHeaders.
const HANDSHAKE_HEADERS = [
  'sec-websocket-protocol',
  'sec-websocket-extensions',
  'sec-websocket-accept',
  'upgrade',
  'connection',
]

/**
 * Runs `fn` in a later turn of the event loop, once every pending microtask (the rest of Hono's
 * middleware chain included) has run: `setImmediate` where the runtime has one (Node, Bun), a
 * zero timer elsewhere. A zero timer is clamped to about 1 ms on Bun, which a connection that
 * sends at once would wait for.
 */
const nextTurn: (fn: () => void) => void = (() => {
  const immediate = (globalThis as { setImmediate?: (fn: () => void) => unknown }).setImmediate
  return typeof immediate === 'function'
    ? (fn) => void immediate(fn)
    : (fn) => void setTimeout(fn, 0)
})()

// RFC 6455 §4.1: the key is 16 random bytes, base64-encoded: 22 characters and '=='.
const KEY_PATTERN = /^[A-Za-z0-9+/]{22}==$/

function hasToken(header: string | null, token: string): boolean {
  if (!header) return false
  // Nearly every client sends exactly the token: answer that without a split and a closure.
  if (header.length === token.length) return header.toLowerCase() === token
  return header.split(',').some((part) => part.trim().toLowerCase() === token)
}

/** Refuses `upgradeHeaders` that would set a header of the handshake's own. */
function assertNoHandshakeHeaders(headers: Headers): void {
  for (const name of HANDSHAKE_HEADERS) {
    if (headers.has(name)) {
      throw new Error(
        `upgradeHeaders() returned ${name}, which the handshake sets itself: list the server's subprotocols in the \`subprotocols\` option, and leave the handshake's headers to Handshake`,
      )
    }
  }
}

/**
 * Checks a request against the opening handshake of RFC 6455 §4.2.1.
 * @returns the {@link UpgradeError} to answer with, or undefined when the request is valid
 */
export function validateHandshake(request: Request): UpgradeError | undefined {
  if (request.method !== 'GET') {
    return new UpgradeError(400, `WebSocket upgrades use GET, not ${request.method}`)
  }
  if (!hasToken(headerOf(request, 'upgrade'), 'websocket')) {
    return new UpgradeError(
      400,
      'Expected a WebSocket upgrade: the Upgrade header must be "websocket"',
    )
  }
  if (!hasToken(headerOf(request, 'connection'), 'upgrade')) {
    return new UpgradeError(
      400,
      'Expected a WebSocket upgrade: the Connection header must include "Upgrade"',
    )
  }
  const version = headerOf(request, 'sec-websocket-version')
  if (version === null) {
    return new UpgradeError(400, 'Missing Sec-WebSocket-Version header: send version 13')
  }
  if (version.trim() !== '13') {
    return new UpgradeError(426, `Unsupported WebSocket version "${version}": only 13 is supported`)
  }
  if (!KEY_PATTERN.test(headerOf(request, 'sec-websocket-key')?.trim() ?? '')) {
    return new UpgradeError(
      400,
      'Invalid Sec-WebSocket-Key: it must be 16 random bytes, base64-encoded',
    )
  }
  return undefined
}

/**
 * The safe default origin rule: a request with no `Origin` header passes (it does not come from
 * a browser page); one with an `Origin` passes only when its host equals the `Host` header.
 */
export function isSameOrigin(request: Request): boolean {
  const origin = headerOf(request, 'origin')
  if (origin === null) return true
  let originUrl: URL
  try {
    originUrl = new URL(origin)
  } catch {
    return false
  }
  const host = headerOf(request, 'host') ?? new URL(request.url).host
  // Read the Host header with the origin's scheme, so that a default port written out
  // (`Host: example.com:80` for `http://example.com`) compares equal, as URL drops it.
  let hostUrl: URL
  try {
    hostUrl = new URL(`${originUrl.protocol}//${host}`)
  } catch {
    return false
  }
  return originUrl.host.toLowerCase() === hostUrl.host.toLowerCase()
}

/**
 * Chooses the subprotocol: the first of the server's, in its order of preference, that the
 * client offers in `Sec-WebSocket-Protocol`. Undefined when none matches.
 */
export function chooseSubprotocol(
  offered: string | null,
  supported: readonly string[],
): string | undefined {
  if (!offered || supported.length === 0) return undefined
  const offers = new Set(offered.split(',').map((protocol) => protocol.trim()))
  return supported.find((protocol) => offers.has(protocol))
}

/**
 * Upgrades HTTP requests to WebSocket connections served by a {@link Controller}. Goyave's
 * `websocket.Upgrader`.
 *
 * @example
 * ```ts
 * const upgrader = new Upgrader(new Chat(), { closeHandshakeTimeout: 5000 })
 * app.get('/chat', upgrader.handler())
 * ```
 */
// biome-ignore lint/suspicious/noExplicitAny: the default matches Hono's own `Env` default
export class Upgrader<E extends Env = any> {
  /** The controller that serves each connection: a `serve` controller or an event controller. */
  readonly controller: AnyController<E>
  /** The options in effect, defaults applied. */
  readonly settings: Readonly<UpgradeSettings>
  // One for every connection of an event controller: a connection holds no closure of its own.
  #eventDispatch: EventDispatch | undefined

  /**
   * @param controller - serves each connection: a {@link Controller} (`serve`) or an
   *   {@link EventController} (`open`, `message`, `close`); either may implement the optional
   *   hooks (`onError`, `upgradeHeaders`, `checkOrigin`, `registerRoute`, `onUpgradeError`)
   * @param options - see {@link UpgradeOptions}
   * @throws RangeError when the options contradict each other (`maxInboundBuffer` cannot hold
   *   one message of `maxMessageSize`), or a bound is not a whole number of 1 or more
   *   (`maxTopicsPerConnection`, `maxTopicLength`)
   */
  constructor(controller: AnyController<E>, options: UpgradeOptions = {}) {
    this.controller = controller
    const settings = { ...defaultSettings }
    for (const [key, value] of Object.entries(options)) {
      if (value !== undefined) (settings as Record<string, unknown>)[key] = value
    }
    const needed = settings.maxMessageSize + MESSAGE_OVERHEAD_BYTES
    if (settings.maxInboundBuffer < needed) {
      throw new RangeError(
        `maxInboundBuffer (${settings.maxInboundBuffer}) cannot hold one message of maxMessageSize (${settings.maxMessageSize}): raise maxInboundBuffer to at least ${needed}, or lower maxMessageSize`,
      )
    }
    for (const name of ['maxTopicsPerConnection', 'maxTopicLength'] as const) {
      const value = settings[name]
      if (!Number.isInteger(value) || value < 1) {
        throw new RangeError(`${name} is ${String(value)}: give a whole number, 1 or more`)
      }
    }
    if (settings.slowSubscriber !== 'close' && settings.slowSubscriber !== 'drop') {
      throw new RangeError(
        `slowSubscriber is "${String(settings.slowSubscriber)}": use 'close' or 'drop'`,
      )
    }
    this.settings = Object.freeze(settings)
  }

  /**
   * The Hono handler that upgrades the request. It answers a bad handshake (400 or 426), a
   * refused origin (403), a server shutting down (503) or a failure (500) with an upgrade error,
   * and a valid one with the runtime's 101 response. It returns as soon as the connection is
   * upgraded; the controller starts after. When `serve` settles, the connection is closed by
   * the rules written on {@link Controller}.
   */
  handler(): MiddlewareHandler<E> {
    const handler: MiddlewareHandler<E> = (c) => {
      // A dispatch from findUpgrader(): say which upgrader serves this route, upgrade nothing.
      const probe = (c.env as { [FIND_UPGRADER]?: unknown } | undefined)?.[FIND_UPGRADER]
      if (typeof probe === 'function') {
        probe(this)
        return Promise.resolve(new Response(null, { status: 204 }))
      }
      return this.#upgrade(c)
    }
    // Lets an adapter find the upgrader of a route again after a hibernation: see upgraderOf().
    Object.defineProperty(handler, UPGRADER, { value: this })
    return handler
  }

  /**
   * Registers the upgrade route on `app`: through the controller's `registerRoute` when it has
   * one, else as GET on the app's root path (mount the app with `app.route()` to place it).
   */
  // biome-ignore lint/suspicious/noExplicitAny: any schema and base path
  registerRoutes(app: Hono<E, any, any>): void {
    const handler = this.handler()
    if (this.controller.registerRoute) {
      this.controller.registerRoute(app, handler)
    } else {
      app.get('/', handler)
    }
  }

  /**
   * For adapters whose runtime drops the isolate's memory while sockets stay open (a Durable
   * Object's hibernation): rebuilds the `Conn` of a socket from what it stored, without running
   * `open` again, and returns the handlers for its events.
   * @param socket - the runtime's socket, as for `UpgradeRequest.open`
   * @param snapshot - what the connection stored (`RuntimeSocket.persist`)
   * @param hub - the hub the connection belongs to: it joins its registry, and its topics again
   * @throws Error for a `serve` controller: a read loop cannot survive a hibernation
   */
  wake(socket: RuntimeSocket, snapshot: ConnSnapshot, hub: Hub): SocketEvents {
    const controller = this.controller
    if (!isEventController(controller)) {
      throw new Error(
        'Only an event controller (open, message, close) can wake from a hibernation: a serve() loop cannot',
      )
    }
    const conn = new Conn(socket, snapshot.protocol || undefined, this.settings, {
      hub,
      url: snapshot.url,
    })
    conn[RESTORE](snapshot)
    ;(controller as { [WAKE]?: (conn: Conn) => void })[WAKE]?.(conn)
    conn[DISPATCH_TO](this.#dispatchFor(controller))
    conn[READY]()
    return conn[EVENTS]
  }

  async #upgrade(c: Context<E>): Promise<Response> {
    const controller = this.controller
    let upgrading: (() => void) | undefined
    try {
      const invalid = validateHandshake(c.req.raw)
      if (invalid) return await this.#reject(c, invalid)
      const allowed = controller.checkOrigin
        ? await controller.checkOrigin(c)
        : isSameOrigin(c.req.raw)
      if (!allowed) {
        const origin = c.req.header('origin')
        return await this.#reject(
          c,
          new UpgradeError(
            403,
            `Origin "${origin}" is not allowed: implement checkOrigin(c) on the controller to accept it`,
          ),
        )
      }
      const adapter = adapterFor(c)
      if (!adapter) throw missingAdapterError()
      const hub = getHub(c)
      if (!hub.connections.accepting) {
        return await this.#reject(
          c,
          new UpgradeError(503, 'The server is shutting down: it accepts no new connections'),
        )
      }
      // From here until its socket opens, the upgrade counts in the registry: a shutdown that
      // starts meanwhile waits for it to open, then closes it (Deno would otherwise cut it).
      upgrading = hub.connections[UPGRADING]()
      const headers = controller.upgradeHeaders
        ? new Headers(await controller.upgradeHeaders(c))
        : NO_UPGRADE_HEADERS
      if (headers !== NO_UPGRADE_HEADERS) assertNoHandshakeHeaders(headers)
      const protocol = chooseSubprotocol(
        headerOf(c.req.raw, 'sec-websocket-protocol'),
        this.settings.subprotocols,
      )
      // The controller starts once the handler has returned, never inside it: some runtimes
      // open the socket inside adapter.upgrade() (Bun, workerd), before the response is done.
      let returned = false
      let start: (() => void) | undefined
      const home: ConnHome = { hub, url: c.req.url }
      const response = await adapter.upgrade(c, {
        headers,
        protocol,
        url: c.req.url,
        maxMessageSize: this.settings.maxMessageSize,
        maxPublishBuffer: this.settings.maxPublishBuffer,
        events: isEventController(controller),
        open: (socket) => {
          const conn = new Conn(socket, protocol, this.settings, home)
          ;(upgrading as () => void)()
          // What a hibernated connection needs to come back (its URL, its protocol) is stored
          // from the start, before `open` assigns anything.
          if (socket.persist) socket.persist(conn[SNAPSHOT]())
          const run = () => this.#start(conn, c)
          if (returned) run()
          else start = run
          return conn[EVENTS]
        },
        abandon: upgrading,
      })
      returned = true
      if (start) nextTurn(start)
      return response
    } catch (err) {
      upgrading?.()
      this.#log('WebSocket upgrade failed:', err)
      const reason = new UpgradeError(500, describeError(err))
      return this.#reject(c, reason).catch((hookError) => {
        this.#log('onUpgradeError failed:', hookError)
        return this.#defaultRejection(reason)
      })
    }
  }

  async #reject(c: Context<E>, reason: UpgradeError): Promise<Response> {
    const controller = this.controller
    let response = controller.onUpgradeError
      ? await controller.onUpgradeError(c, reason.status, reason)
      : this.#defaultRejection(reason)
    if (!response.headers.has('sec-websocket-version')) {
      try {
        response.headers.set('Sec-WebSocket-Version', '13')
      } catch {
        // Immutable headers (a fetched response): copy it to add ours.
        response = new Response(response.body, response)
        response.headers.set('Sec-WebSocket-Version', '13')
      }
    }
    return response
  }

  #defaultRejection(reason: UpgradeError): Response {
    const error = this.settings.debug ? reason.message : (STATUS_TEXT[reason.status] ?? 'Error')
    return new Response(JSON.stringify({ error }), {
      status: reason.status,
      headers: { 'Content-Type': 'application/json', 'Sec-WebSocket-Version': '13' },
    })
  }

  #start(conn: Conn, c: Context<E>): void {
    const controller = this.controller
    if (isEventController(controller)) {
      conn[DISPATCH_TO](this.#dispatchFor(controller))
      this.#open(controller, conn, c)
    } else {
      this.#serve(controller as ControllerWithHooks<E>, conn, c)
    }
  }

  /**
   * Runs `serve`, then closes the connection by what it did, and settles `events.ended`. A
   * chain on serve's promise, not an `async` function awaiting it: an idle connection then
   * keeps no suspended frame of the upgrader's. The chain keeps the context only for `onError`,
   * the one hook that reads it after `serve` started: without `onError`, the context (Hono's
   * `Context`, the upgrade request, the 101's response) lives only as long as `serve` keeps it.
   */
  #serve(controller: ControllerWithHooks<E>, conn: Conn, c: Context<E>): void {
    let served: Promise<unknown>
    try {
      served = Promise.resolve(controller.serve(conn, c))
    } catch (err) {
      served = Promise.reject(err)
    }
    // Made by a module function, so that this frame's closures do not capture `c` themselves.
    const context = controller.onError ? contextOf(c) : undefined
    served.then(
      () => settleAfter(conn, conn.closeNormal()),
      (err: unknown) => settleAfter(conn, this.#failed(conn, context, err)),
    )
  }

  /** Runs `open`; messages wait until it settles. */
  #open(controller: EventControllerWithHooks, conn: Conn, c: Context<E>): void {
    if (!controller.open) {
      conn[READY]()
      return
    }
    let result: unknown
    try {
      result = controller.open(conn, c)
    } catch (err) {
      conn[STOP_DISPATCH]()
      void this.#failed(conn, () => c, err)
      conn[READY]()
      return
    }
    if (result !== undefined && typeof (result as PromiseLike<unknown>)?.then === 'function') {
      ;(result as PromiseLike<unknown>).then(
        () => conn[READY](),
        (err: unknown) => {
          conn[STOP_DISPATCH]()
          void this.#failed(conn, () => c, err)
          conn[READY]()
        },
      )
    } else {
      conn[READY]()
    }
  }

  /**
   * The handlers of an event controller, shared by its connections. The upgrade's context is
   * not kept past `open`: later, and after a hibernation, `onError` gets a context rebuilt from
   * the URL.
   */
  #dispatchFor(controller: EventControllerWithHooks): EventDispatch {
    this.#eventDispatch ??= {
      message: (conn, message) => controller.message(conn, message),
      fail: (conn, err) => {
        conn[STOP_DISPATCH]()
        void this.#failed(conn, () => detachedContext<E>(conn.url), err)
      },
      closed: (conn, error) => this.#closed(controller, conn, error),
    }
    return this.#eventDispatch
  }

  #closed(controller: EventControllerWithHooks, conn: Conn, end: CloseEnd): void {
    if (!controller.close) {
      conn[SETTLE_ENDED]()
      return
    }
    const report = (err: unknown) => this.#report(() => detachedContext<E>(conn.url), err)
    let result: unknown
    try {
      result = controller.close(conn, end.error)
    } catch (err) {
      void report(err).then(() => conn[SETTLE_ENDED]())
      return
    }
    if (result !== undefined && typeof (result as PromiseLike<unknown>)?.then === 'function') {
      ;(result as PromiseLike<unknown>).then(
        () => conn[SETTLE_ENDED](),
        (err: unknown) => report(err).then(() => conn[SETTLE_ENDED]()),
      )
    } else {
      conn[SETTLE_ENDED]()
    }
  }

  /**
   * What follows a failed `serve` or handler: close normally, or report and close with 1011. A
   * close error of a close this side started itself (a shutdown's 1012, the app's 4000) is no
   * failure of the controller's: nothing is reported.
   */
  async #failed(conn: Conn, context: (() => Context<E>) | undefined, err: unknown): Promise<void> {
    try {
      if (isCloseError(err) || (conn[CLOSED_HERE] && closeErrorIn(err) !== undefined)) {
        await conn.closeNormal()
        return
      }
      await this.#report(context ?? (() => detachedContext<E>(conn.url)), err)
      await conn.closeWithError(err)
    } catch (unexpected) {
      // Nothing here may reject: the close still goes out.
      this.#log('Closing the connection failed:', unexpected)
      await conn.close(CloseCode.InternalError, 'Internal server error').catch(() => {})
    }
  }

  /**
   * Hands an error to `onError`, or logs it. A peer that vanished (1006) is not the controller's
   * fault: it is only logged with `logAbnormalCloses`. An `onError` that does not settle within
   * the close-handshake timeout is logged, and the close goes out anyway.
   */
  async #report(context: () => Context<E>, err: unknown): Promise<void> {
    const controller = this.controller
    if (!controller.onError) {
      const closeError = closeErrorIn(err)
      if (closeError?.code === CloseCode.AbnormalClosure && !this.settings.logAbnormalCloses) {
        return
      }
      this.#log('WebSocket controller failed:', err)
      return
    }
    const bound =
      this.settings.closeHandshakeTimeout > 0 ? this.settings.closeHandshakeTimeout : 10_000
    let timer: ReturnType<typeof setTimeout> | undefined
    try {
      const handled = Promise.resolve(controller.onError(context(), err))
      const late = await Promise.race([
        handled.then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), bound)
        }),
      ])
      if (late) {
        handled.catch(() => {})
        this.#log(`onError did not settle within ${bound} ms; the connection is closed anyway`)
      }
    } catch (hookError) {
      this.#log('onError failed while handling', err, 'with', hookError)
    } finally {
      if (timer !== undefined) clearTimeout(timer)
    }
  }

  #log(...args: unknown[]): void {
    try {
      this.settings.logger.error(...args)
    } catch {
      // A broken logger must not stop the close.
    }
  }
}

/** A getter of `c` made outside the upgrader's frames, so that it is all that holds `c`. */
function contextOf<E extends Env>(c: Context<E>): () => Context<E> {
  return () => c
}

/** Settles `events.ended` once the close that ends `serve` is done (it never rejects). */
function settleAfter(conn: Conn, closing: Promise<void>): void {
  closing.then(() => conn[SETTLE_ENDED]())
}

/**
 * The upgrade request as it is known once `open` has returned: its URL only. Reading its
 * headers throws, rather than quietly reading none.
 */
class DetachedRequest extends Request {
  override get headers(): Headers {
    throw new Error(
      "The upgrade request's headers are gone once open() has returned (and after a Durable Object's hibernation): read what you need in open() and keep it in conn.data",
    )
  }
}

/**
 * A Hono context for a connection whose upgrade request is gone (after `open`, or after a
 * hibernation), as `onError` gets it: `c.req.url`, `c.req.path` and `c.req.query()` work;
 * `c.req.header()` throws, and `c.req.param()`, `c.get()` and `c.env` are empty. Keep what you
 * need in `conn.data`.
 */
function detachedContext<E extends Env>(url: string): Context<E> {
  return new Context(new DetachedRequest(url), {
    env: undefined,
    path: new URL(url).pathname,
  }) as Context<E>
}

const UPGRADER = Symbol.for('handshake.upgrader')
/** The env key of a dispatch made by {@link findUpgrader}: the upgrader reports itself to it. */
const FIND_UPGRADER = Symbol.for('handshake.findUpgrader')
/**
 * Where Hono keeps the original handler when it wraps one: `app.route()` of a sub-app that has
 * its own `onError` (hono's `COMPOSED_HANDLER`, also read by its `findTargetHandler`).
 */
const COMPOSED_HANDLER = '__COMPOSED_HANDLER'

/**
 * The {@link Upgrader} behind a handler made by {@link upgrade} or `upgrader.handler()`, or
 * undefined for any other function. It sees through the wrapper Hono puts around a sub-app's
 * handlers when the sub-app has its own `onError`. For adapters that wake connections after a
 * hibernation: see {@link findUpgrader}.
 */
export function upgraderOf(handler: unknown): Upgrader | undefined {
  for (let depth = 0; typeof handler === 'function' && depth < 16; depth++) {
    const upgrader = (handler as { [UPGRADER]?: unknown })[UPGRADER]
    if (upgrader instanceof Upgrader) return upgrader
    handler = (handler as { [COMPOSED_HANDLER]?: unknown })[COMPOSED_HANDLER]
  }
  return undefined
}

/**
 * The {@link Upgrader} of the route that serves `url` in `app`, for adapters that wake
 * connections after a hibernation, or undefined when no `upgrade()` handler serves it.
 *
 * It first looks in the app's router, which covers `app.get(path, upgrade(...))` with any
 * middleware before it, `basePath()`, and `app.route()` of a sub-app (with or without its own
 * `onError`); this runs nothing of the app. A route mounted with `mount()` calls another app's
 * `fetch`, which no router shows: then it dispatches a GET for `url` through `app.fetch`, with
 * `env` (and a marker the upgrader answers with 204 instead of upgrading). Middleware on the
 * way runs for that request, which has no headers; the upgrader must be reached before the
 * first `await` of any middleware.
 * @param app - the app whose routes accepted the connection
 * @param url - the upgrade request's URL, as stored with the connection
 * @param env - the Hono `env` the app is served with
 */
export function findUpgrader(
  // biome-ignore lint/suspicious/noExplicitAny: any app, whatever its env and schema
  app: Hono<any, any, any>,
  url: string,
  env?: object,
): Upgrader | undefined {
  const path = app.getPath(new Request(url), { env })
  const [matches] = app.router.match('GET', path) as [[[unknown, unknown], unknown][]]
  for (const [[handler]] of matches) {
    const upgrader = upgraderOf(handler)
    if (upgrader) return upgrader
  }
  let found: Upgrader | undefined
  const probeEnv = Object.create(env ?? null, {
    [FIND_UPGRADER]: {
      value: (upgrader: Upgrader) => {
        found ??= upgrader
      },
    },
  })
  try {
    const answer = app.fetch(new Request(url), probeEnv) as unknown
    if (answer instanceof Promise) answer.catch(() => {})
  } catch {
    // The app threw on a request without headers: nothing found this way.
  }
  return found
}

/**
 * The short form of `new Upgrader(controller, options).handler()`: a Hono handler that upgrades
 * the request and runs the controller on the connection (`serve`, or the event handlers).
 *
 * @example
 * ```ts
 * app.get('/ws', upgrade(new Echo(), { subprotocols: ['chat.v1'] }))
 * ```
 */
// biome-ignore lint/suspicious/noExplicitAny: see Upgrader
export function upgrade<E extends Env = any>(
  controller: AnyController<E>,
  options?: UpgradeOptions,
): MiddlewareHandler<E> {
  return new Upgrader(controller, options).handler()
}
