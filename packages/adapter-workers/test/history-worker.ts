/**
 * The Worker of the history tests: rooms as `HandshakeObject`s whose topics keep history, turned
 * on in the constructor so that every incarnation has it. A SQLite-backed class (`Room`, under
 * `/rooms/`) and one on the older key-value storage (`LegacyRoom`, under `/legacy/`).
 *
 * - `GET /:kind/:room/ws?epoch=&offset=`: an event controller (its socket hibernates) that
 *   subscribes to the room from that position (none without `epoch`) and sends
 *   `{ type: 'subscribed', position, recovered }`; deliveries arrive as JSON with their position;
 * - `POST /:kind/:room/publish`: publishes the body, answers the room's latest position (or 413
 *   and the error, when the publish threw);
 * - `GET /:kind/:room/constructed`: how many times the object's constructor ran.
 *
 * Rooms whose name starts with `short-` keep their history for 1 s after the last publish.
 * @module
 */
import '../src/index.js'
import type { DurableObjectNamespace, DurableObjectState } from '@cloudflare/workers-types'
import { type Delivery, getHub, type Position, upgrade } from '@handshake/core'
import { Hono } from 'hono'
import { HandshakeObject, toObject } from '../src/index.js'
import { SHORT_TTL_MS } from './shared.js'

interface Env {
  ROOMS: DurableObjectNamespace
  LEGACY: DurableObjectNamespace
}

const frame = (d: Delivery) =>
  JSON.stringify(d.type === 'message' ? { ...d, data: String(d.data) } : d)

/** One app per incarnation, as a HandshakeObject's field: its upgrader is found after a wake. */
function roomApp(storage: DurableObjectState['storage']) {
  return new Hono()
    .get(
      '/:kind/:room/ws',
      upgrade({
        async open(conn, c) {
          const epoch = c.req.query('epoch')
          const since: Position | undefined = epoch
            ? { epoch, offset: Number(c.req.query('offset')) }
            : undefined
          const subscription = await conn.subscribe(c.req.param('room') ?? '', { since })
          await conn.send(JSON.stringify({ type: 'subscribed', ...subscription }))
        },
        message() {},
      }),
    )
    .post('/:kind/:room/publish', async (c) => {
      const { topics } = getHub(c)
      const room = c.req.param('room')
      try {
        topics.publish(room, await c.req.text())
      } catch (err) {
        return c.json({ error: `${(err as Error).name}: ${(err as Error).message}` }, 413)
      }
      return c.json((await topics.position(room)) ?? null)
    })
    .get('/:kind/:room/constructed', async (c) =>
      c.json((await storage.get<number>('constructed')) ?? 0),
    )
}

/** A room whose topics keep their last 100 messages. */
export class Room extends HandshakeObject<Env> {
  app = roomApp(this.ctx.storage as never)

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx as never, env)
    void ctx.blockConcurrencyWhile(async () => {
      await ctx.storage.put(
        'constructed',
        ((await ctx.storage.get<number>('constructed')) ?? 0) + 1,
      )
    })
    this.topics.useHistory({
      history: (topic) => ({ size: 100, ttl: topic.startsWith('short-') ? SHORT_TTL_MS : 600_000 }),
      frame,
    })
  }
}

/** The same room, bound on the older key-value storage (`new_classes`). */
export class LegacyRoom extends Room {}

export default new Hono<{ Bindings: Env }>()
  .all('/rooms/:room/*', (c) => toObject(c.env.ROOMS, c.req.param('room'), c.req.raw))
  .all('/legacy/:room/*', (c) => toObject(c.env.LEGACY, c.req.param('room'), c.req.raw))
