/**
 * The chat on Cloudflare Workers: `pnpm dev:workers` runs it in workerd through wrangler, and
 * `wrangler deploy` publishes it.
 *
 * A Worker may not touch a WebSocket from another request's handler ("Cannot perform I/O on
 * behalf of a different request"), so a plain Worker cannot broadcast to a room. Each room is
 * therefore one Durable Object, a `HandshakeObject` that runs the same `app`: every socket of a
 * room is accepted by that object, whose topics carry the room. The chat's controller is an
 * event controller, so the object accepts the sockets through the Hibernation API: between
 * messages the platform may drop the room from memory while its members stay connected, and
 * the next message wakes it with each member's `conn.data` and topic. The page is served by the
 * Worker itself.
 *
 * A Worker has no shutdown hook to wire: when the platform ends a connection (a deploy), the page
 * sees the close and reconnects with back-off.
 * @module
 */
import type { DurableObjectNamespace } from '@cloudflare/workers-types'
import { HandshakeObject, toObject } from '@handshake/workers'
import { Hono } from 'hono'
import { app } from './app.ts'

/** The Worker's bindings, as `wrangler.jsonc` declares them. */
export interface Env {
  /** One Durable Object per room. */
  ROOMS: DurableObjectNamespace
}

/** A room: a Durable Object that serves the app's `/ws/:room` for that room's sockets. */
export class ChatRoom extends HandshakeObject<Env> {
  app = app
}

/** The Worker: each room's sockets go to its object, the rest (the page) is served here. */
const worker = new Hono<{ Bindings: Env }>()
worker.get('/ws/:room', (c) => toObject(c.env.ROOMS, c.req.param('room'), c.req.raw))
worker.route('/', app)

export default worker
