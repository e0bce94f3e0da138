/**
 * The upgrade pipeline: validate the handshake, check the origin, hand the request to the
 * runtime's adapter, run `serve`, and close the connection by the rules of what `serve` did.
 * @module
 */
import type { Context, Env, Hono, MiddlewareHandler } from 'hono'
import { CloseCode, isCloseError, NormalClosureMessage } from './close.js'
import { Conn } from './conn.js'
import {
  type ControllerWithHooks,
  defaultSettings,
  type UpgradeOptions,
  type UpgradeSettings,
} from './contracts.js'
import { adapterFor, missingAdapterError, type RuntimeSocket, type SocketEvents } from './port.js'

/** An upgrade that cannot go on, with the HTTP status that answers it. */
export class UpgradeError extends Error {
  override readonly name = 'UpgradeError'
  /**
   * @param status - the HTTP status of the answer: 400, 403, 426 or 500
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
}

// Shared by every upgrade without upgradeHeaders; adapters only read `request.headers`.
const NO_HEADERS = new Headers()

// RFC 6455 §4.1: the key is 16 random bytes, base64-encoded: 22 characters and '=='.
const KEY_PATTERN = /^[A-Za-z0-9+/]{22}==$/

function hasToken(header: string | null, token: string): boolean {
  if (!header) return false
  return header.split(',').some((part) => part.trim().toLowerCase() === token)
}

/**
 * Checks a request against the opening handshake of RFC 6455 §4.2.1.
 * @returns the {@link UpgradeError} to answer with, or undefined when the request is valid
 */
export function validateHandshake(request: Request): UpgradeError | undefined {
  const headers = request.headers
  if (request.method !== 'GET') {
    return new UpgradeError(400, `WebSocket upgrades use GET, not ${request.method}`)
  }
  if (!hasToken(headers.get('upgrade'), 'websocket')) {
    return new UpgradeError(
      400,
      'Expected a WebSocket upgrade: the Upgrade header must be "websocket"',
    )
  }
  if (!hasToken(headers.get('connection'), 'upgrade')) {
    return new UpgradeError(
      400,
      'Expected a WebSocket upgrade: the Connection header must include "Upgrade"',
    )
  }
  const version = headers.get('sec-websocket-version')
  if (version === null) {
    return new UpgradeError(400, 'Missing Sec-WebSocket-Version header: send version 13')
  }
  if (version.trim() !== '13') {
    return new UpgradeError(426, `Unsupported WebSocket version "${version}": only 13 is supported`)
  }
  if (!KEY_PATTERN.test(headers.get('sec-websocket-key')?.trim() ?? '')) {
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
  const origin = request.headers.get('origin')
  if (origin === null) return true
  let originHost: string
  try {
    originHost = new URL(origin).host
  } catch {
    return false
  }
  const host = request.headers.get('host') ?? new URL(request.url).host
  return originHost.toLowerCase() === host.toLowerCase()
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
  /** The controller that serves each connection. */
  readonly controller: ControllerWithHooks<E>
  /** The options in effect, defaults applied. */
  readonly settings: Readonly<UpgradeSettings>

  /**
   * @param controller - serves each connection; may implement the optional hooks
   *   (`onError`, `upgradeHeaders`, `checkOrigin`, `registerRoute`, `onUpgradeError`)
   * @param options - see {@link UpgradeOptions}
   */
  constructor(controller: ControllerWithHooks<E>, options: UpgradeOptions = {}) {
    this.controller = controller
    const settings = { ...defaultSettings }
    for (const [key, value] of Object.entries(options)) {
      if (value !== undefined) (settings as Record<string, unknown>)[key] = value
    }
    this.settings = Object.freeze(settings)
  }

  /**
   * The Hono handler that upgrades the request. It answers a bad handshake (400 or 426), a
   * refused origin (403) or a failure (500) with an upgrade error, and a valid one with the
   * runtime's 101 response. It returns as soon as the connection is upgraded; `serve` runs after.
   * When `serve` settles, the connection is closed by the rules written on {@link Controller}.
   */
  handler(): MiddlewareHandler<E> {
    return (c) => this.#upgrade(c)
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

  async #upgrade(c: Context<E>): Promise<Response> {
    const controller = this.controller
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
      const headers = controller.upgradeHeaders
        ? new Headers(await controller.upgradeHeaders(c))
        : NO_HEADERS
      const protocol = chooseSubprotocol(
        c.req.header('sec-websocket-protocol') ?? null,
        this.settings.subprotocols,
      )
      return await adapter.upgrade(c, {
        headers,
        protocol,
        maxMessageSize: this.settings.maxMessageSize,
        open: (socket) => this.#open(c, socket, protocol),
      })
    } catch (err) {
      this.#log('WebSocket upgrade failed:', err)
      const reason = err instanceof Error ? err : new Error(String(err))
      return this.#reject(c, new UpgradeError(500, reason.message)).catch((hookError) => {
        this.#log('onUpgradeError failed:', hookError)
        return this.#defaultRejection(new UpgradeError(500, reason.message))
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

  #open(c: Context<E>, socket: RuntimeSocket, protocol: string | undefined): SocketEvents {
    const conn = new Conn(socket, protocol, this.settings)
    conn.events.ended = this.#serve(conn, c)
    return conn.events
  }

  /** Runs `serve` and closes the connection by what it did. Never rejects. */
  async #serve(conn: Conn, c: Context<E>): Promise<void> {
    try {
      await this.controller.serve(conn, c)
      await conn.close(CloseCode.NormalClosure, NormalClosureMessage)
    } catch (err) {
      if (isCloseError(err)) {
        await conn.closeNormal()
        return
      }
      await this.#report(c, err)
      await conn.closeWithError(err)
    }
  }

  async #report(c: Context<E>, err: unknown): Promise<void> {
    const controller = this.controller
    if (!controller.onError) {
      this.#log('WebSocket controller failed:', err)
      return
    }
    try {
      await controller.onError(c, err)
    } catch (hookError) {
      this.#log('onError failed while handling', err, 'with', hookError)
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

/**
 * The short form of `new Upgrader(controller, options).handler()`: a Hono handler that upgrades
 * the request and runs `controller.serve` on the connection.
 *
 * @example
 * ```ts
 * app.get('/ws', upgrade(new Echo(), { subprotocols: ['chat.v1'] }))
 * ```
 */
// biome-ignore lint/suspicious/noExplicitAny: see Upgrader
export function upgrade<E extends Env = any>(
  controller: ControllerWithHooks<E>,
  options?: UpgradeOptions,
): MiddlewareHandler<E> {
  return new Upgrader(controller, options).handler()
}
