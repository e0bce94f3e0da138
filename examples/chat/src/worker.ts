/**
 * The chat on Cloudflare Workers: `pnpm dev:workers` runs it in workerd through wrangler, and
 * `wrangler deploy` publishes it. A plain Worker cannot broadcast (a WebSocket belongs to its own
 * request), so every socket goes to one Durable Object that runs the same `app` and holds every
 * room (the `rooms` request sees them all). It hibernates between messages; a wake brings back
 * each member's `conn.data` and topics, and the rooms' history from its storage. The page is
 * served by the Worker itself; when the platform ends a connection, the page reconnects.
 * @module
 */
import type { DurableObjectNamespace } from '@cloudflare/workers-types'
import { HandshakeObject, toObject } from '@handshake/workers'
import { Hono } from 'hono'
import { app, useRoomHistory } from './app.ts'

/** The Worker's bindings, as `wrangler.jsonc` declares them. */
export interface Env {
  /** The chat's object (one, named `chat`). */
  ROOMS: DurableObjectNamespace
}

/** The chat: a Durable Object that serves the app's `/ws`, its rooms' history in its storage. */
export class ChatRoom extends HandshakeObject<Env> {
  app = app

  // The parameters as the package types them (see the Workers README).
  constructor(...args: ConstructorParameters<typeof HandshakeObject<Env>>) {
    super(...args)
    useRoomHistory(this.topics)
  }
}

/** The Worker: the sockets go to the object, the rest (the page) is served here. */
const worker = new Hono<{ Bindings: Env }>()
worker.get('/ws', (c) => toObject(c.env.ROOMS, 'chat', c.req.raw))
worker.route('/', app)

export default worker
