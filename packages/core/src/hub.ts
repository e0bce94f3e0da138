/**
 * Hubs: the one owner of a set of topics and of a connection registry.
 * @module
 */
import type { Context } from 'hono'
import { Connections } from './connections.js'
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
