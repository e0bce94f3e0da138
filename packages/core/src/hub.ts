/**
 * Hubs: the one owner of a set of topics and of a connection registry.
 * @module
 */
import type { Context } from 'hono'
import { Connections, type ShutdownOptions } from './connections.js'
import { adapterFor, missingAdapterError } from './port.js'
import { Topics, type TopicsOptions } from './topics.js'

/**
 * The owner of one set of topics and one connection registry: each server an adapter's `serve()`
 * starts, the default hub of an adapter's short form (Bun's `export default`, a plain
 * Deno server, a plain Worker), and each Durable Object. Two hubs never see each other's topics
 * or connections, and one hub's shutdown never affects another.
 */
export interface Hub {
  /** The hub's topics: its connections subscribe and publish through them. */
  readonly topics: Topics
  /** The hub's open connections, and their graceful shutdown. */
  readonly connections: Connections
}

/** The address a server listens on. */
export interface ServerAddress {
  /** The interface's address, such as `127.0.0.1`. */
  readonly hostname: string
  /** The port; the one the system chose when `0` was asked for. */
  readonly port: number
}

/**
 * What `serve(app, options)` returns on Node, Bun and Deno: a hub that listens. Its
 * {@link HandshakeServer.shutdown} closes its own connections gracefully, then stops the server.
 * @typeParam S - the runtime's own server
 */
export interface HandshakeServer<S = unknown> extends Hub {
  /** Where the server listens. */
  readonly address: ServerAddress
  /** The runtime's own server, for what Handshake does not cover. */
  readonly server: S
  /**
   * Shuts down gracefully and resolves by `timeout`: new upgrades get 503, every open connection
   * of this hub gets one close frame (1001 `Server shutting down` by default), the server stops
   * listening, what is left at the deadline is torn down, and the hub's backplane is closed last.
   * Other hubs are not affected.
   *
   * - It runs once: every later or concurrent call returns the first one's promise, whatever
   *   its options.
   * - It rejects only with a `RangeError`, before anything is closed, when `code`, `reason` or
   *   `timeout` is invalid; such a call counts for nothing, and may be made again.
   * - Otherwise it never rejects: a runtime that fails to stop cleanly, or a backplane that fails
   *   to close, is logged with `console.error`, and the shutdown still resolves once the rest is
   *   done (so that a signal handler's `server.shutdown()` never crashes the process).
   */
  shutdown(options?: ShutdownOptions): Promise<void>
}

/**
 * The key under which an adapter's `serve`, a Durable Object or the test kit puts the hub of a
 * request in its Hono `env` (`app.fetch(request, { [HUB]: hub })`). Without it, the request
 * belongs to the installed adapter's default hub.
 */
export const HUB: unique symbol = Symbol.for('handshake.hub') as never

/**
 * Makes a hub: fresh topics and an empty registry. Adapters make one per server; apps get theirs
 * with {@link getHub}.
 * @param options - the options of its {@link Topics}
 */
export function createHub(options?: TopicsOptions): Hub {
  return { topics: new Topics(options), connections: new Connections() }
}

/**
 * The hub of the request being handled: the server, Worker or Durable Object it came through.
 * Call it in an HTTP route, in middleware, in `serve(conn, c)` or in `open(conn, c)`; an event
 * handler, which gets no `c`, reads `conn.hub`.
 *
 * @example
 * ```ts
 * app.post('/rooms/:room', async (c) => {
 *   getHub(c).topics.publish(c.req.param('room'), await c.req.text())
 *   return c.body(null, 204)
 * })
 * ```
 * @throws Error naming the package to import, when the request came through no adapter
 */
export function getHub(c: Context): Hub {
  const env = c.env as { [HUB]?: Hub } | undefined
  const own = env && typeof env === 'object' ? env[HUB] : undefined
  if (own) return own
  const adapter = adapterFor(c)
  if (!adapter) throw missingAdapterError()
  return adapter.hub(c)
}
