/**
 * The chat on Cloudflare Workers: `pnpm dev:workers` runs it in workerd through wrangler, and
 * `wrangler deploy` publishes it. Importing `@handshake/workers` installs the adapter.
 *
 * A Worker may not touch a WebSocket from another request's handler ("Cannot perform I/O on
 * behalf of a different request"), so a plain Worker cannot broadcast to a room. Each room is
 * therefore one Durable Object, which runs the same `app`: every socket of a room is accepted by
 * that object, where they may all talk to each other. The page is served by the Worker itself.
 *
 * A Worker has no shutdown hook to wire: when the platform ends a connection (a deploy, an
 * evicted object), the page sees the close and reconnects with back-off.
 * @module
 */
import '@handshake/workers'
import type {
  DurableObjectNamespace,
  DurableObjectState,
  ExecutionContext,
} from '@cloudflare/workers-types'
import { app } from './app.ts'

/** The Worker's bindings, as `wrangler.jsonc` declares them. */
export interface Env {
  /** One Durable Object per room. */
  ROOMS: DurableObjectNamespace
}

/** A room: a Durable Object that serves the app's `/ws/:room` for that room's sockets. */
export class ChatRoom {
  constructor(
    readonly state: DurableObjectState,
    readonly env: Env,
  ) {}

  fetch(request: Request): Response | Promise<Response> {
    return app.fetch(request, this.env)
  }
}

const ROOM_PATH = /^\/ws\/([^/]+)$/

export default {
  fetch(request: Request, env: Env, ctx: ExecutionContext): Response | Promise<Response> {
    const room = ROOM_PATH.exec(new URL(request.url).pathname)?.[1]
    if (room === undefined) return app.fetch(request, env, ctx)
    const stub = env.ROOMS.get(env.ROOMS.idFromName(room))
    // The same objects at run time; only the DOM's and workers-types' declarations differ.
    return stub.fetch(request as never) as unknown as Promise<Response>
  },
}
