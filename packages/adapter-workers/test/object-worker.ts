/**
 * The Worker of the Durable Object tests: one `HandshakeObject` per room, reached with
 * `toObject()`, and a plain HTTP route that publishes to a room over RPC.
 * @module
 */
import '../src/index.js'
import type { DurableObjectNamespace, DurableObjectState } from '@cloudflare/workers-types'
import { type Conn, type EventControllerWithHooks, upgrade } from '@handshake/core'
import { Hono } from 'hono'
import { HandshakeObject, toObject } from '../src/index.js'

interface Env {
  ROOMS: DurableObjectNamespace<Room>
}

/** What a member of a room keeps: all of it must come back after a hibernation. */
interface Member {
  room: string
  name: string
  count: number
}

/** What `/rooms/:room/stats` answers. */
export interface RoomStats {
  /** How many times the object's constructor ran (counted in its storage). */
  constructed: number
  /** Open connections in this incarnation of the object. */
  connections: number
  /** Subscribers of the room's topic in this incarnation. */
  subscribers: number
  /** What onError saw when it read the upgrade request's headers after a wake. */
  headerError?: string
}

/** A room's chat, as an event controller: everything it remembers is in conn.data and topics. */
function chat(storage: DurableObjectState['storage']): EventControllerWithHooks<Member> {
  return {
    async open(conn, c) {
      const room = c.req.param('room') ?? 'lobby'
      conn.data = { room, name: c.req.query('name') ?? 'anonymous', count: 0 }
      await conn.subscribe(room)
      // A close that open() starts, outside any WebSocket event of the object.
      if (conn.data.name === 'refused') await conn.close(4003, 'refused in open')
    },
    async message(conn, msg) {
      const text = String(msg.data)
      if (text === 'who') return conn.send(`you are ${conn.data.name}`)
      if (text === 'count') {
        conn.data = { ...conn.data, count: conn.data.count + 1 }
        return conn.send(`count ${conn.data.count}`)
      }
      if (text === 'topics') return conn.send(`topics ${[...conn.topics].join(',')}`)
      if (text === 'big') {
        try {
          conn.data = { ...conn.data, name: 'x'.repeat(3000) }
        } catch (err) {
          return conn.send(`${(err as Error).name}: ${(err as Error).message}`)
        }
      }
      if (text === 'bye') return conn.close(4000, 'server says bye')
      if (text === 'fail') throw new Error('message failed on purpose')
      conn.publish(conn.data.room, `${conn.data.name}: ${text}`)
    },
    close(conn, err) {
      conn.publish(conn.data.room, `${conn.data.name} left (${err.code})`)
    },
    async onError(c, err) {
      // After open, and after a wake, the upgrade request's headers are gone: say so clearly.
      try {
        c.req.header('x-anything')
      } catch (headerError) {
        await storage.put('headerError', (headerError as Error).message)
      }
      console.log(`onError: ${(err as Error).message}`)
    },
  }
}

/** A room: the object that holds every socket of one room. */
export class Room extends HandshakeObject<Env> {
  app = new Hono()
    // A handler made once per incarnation: after a wake, the object finds it in the router.
    .get('/rooms/:room/ws', upgrade(chat(this.ctx.storage as never)))
    .get(
      '/rooms/:room/serve',
      upgrade({
        async serve(conn: Conn) {
          for await (const msg of conn) await conn.send(msg.data)
        },
      }),
    )
    .get('/rooms/:room/stats', async (c) => {
      const stats: RoomStats = {
        constructed: (await this.ctx.storage.get<number>('constructed')) ?? 0,
        connections: this.connections.size,
        subscribers: this.topics.subscribers(c.req.param('room')),
        headerError: await this.ctx.storage.get<string>('headerError'),
      }
      return c.json(stats)
    })

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx as never, env)
    // Counts the incarnations: a wake from hibernation runs the constructor again.
    void ctx.blockConcurrencyWhile(async () => {
      const constructed = ((await ctx.storage.get<number>('constructed')) ?? 0) + 1
      await ctx.storage.put('constructed', constructed)
    })
  }
}

const worker = new Hono<{ Bindings: Env }>()
worker.all('/rooms/:room/*', (c) => toObject(c.env.ROOMS, c.req.param('room'), c.req.raw))
worker.post('/publish/:room', async (c) => {
  const room = c.req.param('room')
  await c.env.ROOMS.get(c.env.ROOMS.idFromName(room)).publish(room, await c.req.text())
  return c.body(null, 204)
})

export default worker
