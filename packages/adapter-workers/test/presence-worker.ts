/**
 * The Worker of the presence tests: rooms as `HandshakeObject`s serving a channel controller
 * (`handshake.v1`) whose sockets hibernate, and that count every run of their constructor and of
 * their handlers in their own storage, so that a test can tell whether anything woke them.
 *
 * - `GET /:kind/:room/ws?name=`: the channel controller; topic `rooms/:room`, with presence: a
 *   subscriber is a member with `{ name }`.
 * - `GET /:kind/:room/stats`: the counts and what the object sees (not counted as a handler run,
 *   though it wakes the object, whose constructor run is counted).
 *
 * `Room` (under `/rooms/`) takes the client's default heartbeat (20 s); `FastRoom` (under
 * `/fast/`) a 1 s one, so that a silent socket is stale after 3 s.
 * @module
 */
import '../src/index.js'
import type { DurableObjectNamespace, DurableObjectState } from '@cloudflare/workers-types'
import { type PresenceMember, upgrade } from '@handshake/core'
import { CHANNEL_PROTOCOL, Channels, type StandardSchemaV1 } from '@handshake/core/channels'
import { Hono } from 'hono'
import { HandshakeObject, toObject } from '../src/index.js'

interface Env {
  ROOMS: DurableObjectNamespace
  FAST: DurableObjectNamespace
}

/** What `/:kind/:room/stats` answers. */
export interface PresenceStats {
  /** When each run of the object's constructor happened (ms since the epoch), in order. */
  constructed: number[]
  /** Runs of its handlers (fetch but this route, webSocketMessage, webSocketClose, webSocketError). */
  handled: number
  /** Open connections in this incarnation. */
  connections: number
  /** Subscribers of the room's topic in this incarnation. */
  subscribers: number
  /** Connections whose `close` ran, with the code it was given, in this incarnation. */
  closes: Record<string, number>
  /** `topics.presence('rooms/:room')`. */
  presence: PresenceMember[]
}

/** Any JSON: the messages are not what these tests look at. */
const anything: StandardSchemaV1<unknown> = {
  '~standard': { version: 1, vendor: 'test', validate: (value) => ({ value }) },
}

/** One channel controller per incarnation, as a HandshakeObject's field. */
function roomApp(room: HandshakeObject, closes: Record<string, number>) {
  const chat = new Channels<{ name: string }>({
    open(conn, c) {
      conn.data = { name: c.req.query('name') ?? 'anonymous' }
    },
    close(conn, error) {
      closes[conn.data.name] = error.code
    },
  }).topic('rooms/:room', { message: anything, presence: ({ conn }) => ({ name: conn.data.name }) })
  return new Hono()
    .get('/:kind/:room/ws', upgrade(chat, { subprotocols: [CHANNEL_PROTOCOL] }))
    .get('/:kind/:room/stats', async (c) => {
      const storage = (room as unknown as { ctx: DurableObjectState }).ctx.storage
      const stats: PresenceStats = {
        constructed: (await storage.get<number[]>('constructed')) ?? [],
        handled: (await storage.get<number>('handled')) ?? 0,
        connections: room.connections.size,
        subscribers: room.topics.subscribers(`rooms/${c.req.param('room')}`),
        closes,
        presence: await room.topics.presence(`rooms/${c.req.param('room')}`),
      }
      return c.json(stats)
    })
}

/** A room that counts its constructor's and its handlers' runs in its storage. */
export class Room extends HandshakeObject<Env> {
  readonly closes: Record<string, number> = {}
  app = roomApp(this, this.closes)

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx as never, env)
    void ctx.blockConcurrencyWhile(async () => {
      const constructed = (await ctx.storage.get<number[]>('constructed')) ?? []
      await ctx.storage.put('constructed', [...constructed, Date.now()])
    })
  }

  #handled(): void {
    const storage = this.ctx.storage
    void this.ctx.blockConcurrencyWhile(async () => {
      await storage.put('handled', ((await storage.get<number>('handled')) ?? 0) + 1)
    })
  }

  override fetch(request: Request): Response | Promise<Response> {
    if (!new URL(request.url).pathname.endsWith('/stats')) this.#handled()
    return super.fetch(request)
  }

  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): void {
    this.#handled()
    super.webSocketMessage(ws, message)
  }

  override webSocketClose(ws: WebSocket, code: number, reason: string, wasClean: boolean): void {
    this.#handled()
    super.webSocketClose(ws, code, reason, wasClean)
  }

  override webSocketError(ws: WebSocket, error: unknown): void {
    this.#handled()
    super.webSocketError(ws, error)
  }
}

/** A room whose clients beat every second: a silent socket is stale after 3 s. */
export class FastRoom extends Room {
  override heartbeatInterval = 1000
}

export default new Hono<{ Bindings: Env }>()
  .all('/rooms/:room/*', (c) => toObject(c.env.ROOMS, c.req.param('room'), c.req.raw))
  .all('/fast/:room/*', (c) => toObject(c.env.FAST, c.req.param('room'), c.req.raw))
