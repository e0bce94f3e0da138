/**
 * What a runtime entry of the two-instance scenarios runs: the server's topics on a Redis
 * backplane, through the client the scenario names, the apps of the history and presence
 * scenarios (`backplane-history.ts`, `backplane-presence.ts`), and the whole entry but the
 * runtime's `serve` ({@link runBackplaneInstance}). It imports no runtime API, so Node, Bun and
 * Deno run it as is.
 * @module
 */
import { type Delivery, type EventController, type Topics, upgrade } from '@handshake/core'
import { redisBackplane } from '@handshake/redis'
import { Hono } from 'hono'
import { createConformanceApp } from './app.ts'

/**
 * The presence heartbeat of the presence scenarios (`backplane-presence.ts`), in ms: short, so
 * that a dead instance's members leave within a second (4 heartbeats).
 */
export const PRESENCE_TEST_INTERVAL = 250

/** What the history scenarios keep per topic: every message of a test, for ten minutes. */
export const HISTORY_OPTIONS = { size: 100_000, ttl: 600_000 } as const

/**
 * Connects a server's topics to Redis at `url` with an `'ioredis'` or `'node-redis'` client.
 * With `history`, every topic keeps {@link HISTORY_OPTIONS} of history, framed for the history
 * scenarios (see {@link createHistoryApp}).
 */
export async function useRedisBackplane(
  topics: Topics,
  url: string,
  kind: string,
  options: { history?: boolean; presence?: boolean } = {},
): Promise<void> {
  const shared = options.presence ? { presenceInterval: PRESENCE_TEST_INTERVAL } : {}
  if (options.history) topics.useHistory({ history: () => HISTORY_OPTIONS, frame: historyFrame })
  // Each client is imported only when used, so a Deno instance is granted what that one needs.
  if (kind === 'ioredis') {
    const { Redis } = await import('ioredis')
    const client = new Redis(url)
    client.on('error', (err) => console.error(`ioredis: ${err}`))
    await topics.useBackplane(redisBackplane({ client, ...shared }))
  } else if (kind === 'node-redis') {
    const { createClient } = await import('redis')
    const client = createClient({ url }).on('error', (err) => console.error(`node-redis: ${err}`))
    await topics.useBackplane(redisBackplane({ client: await client.connect(), ...shared }))
  } else {
    throw new Error(`Unknown Redis client "${kind}": use ioredis or node-redis`)
  }
}

/** What a history scenario's client is sent: one JSON object per delivery. */
export type HistoryFrame =
  | {
      readonly type: 'message'
      readonly epoch: string
      readonly offset: number
      readonly data: string
    }
  | {
      readonly type: 'gap'
      readonly epoch: string
      readonly offset: number
      readonly reason: string
    }
  | {
      readonly type: 'subscribed'
      readonly position: { epoch: string; offset: number } | null
      readonly recovered: boolean
    }

/** Frames a delivery as a {@link HistoryFrame}. */
export function historyFrame(delivery: Delivery): string {
  const { epoch = '', offset = 0 } = delivery.position ?? {}
  return JSON.stringify(
    delivery.type === 'message'
      ? { type: 'message', epoch, offset, data: String(delivery.data) }
      : { type: 'gap', epoch, offset, reason: delivery.reason },
  )
}

/**
 * The app of the history scenarios: `GET /history/:topic?epoch=E&offset=N` subscribes to the
 * topic from that position (without them, from now), says `subscribed` with the position and
 * whether the recovery was complete, and publishes each text message it receives to the topic
 * (every subscriber but the sender, on every instance).
 */
export function createHistoryApp(): Hono {
  const room: EventController<{ topic: string }> = {
    async open(conn, c) {
      const topic = c.req.param('topic') ?? 'lobby'
      conn.data = { topic }
      const epoch = c.req.query('epoch')
      const offset = Number(c.req.query('offset'))
      const since = epoch ? { epoch, offset } : undefined
      const { position, recovered } = await conn.subscribe(topic, { since })
      conn.send(JSON.stringify({ type: 'subscribed', position: position ?? null, recovered }))
    },
    message(conn, msg) {
      conn.publish(conn.data.topic, msg.data)
    },
  }
  return new Hono().get('/history/:topic', upgrade(room))
}

/**
 * The app of the presence scenarios: `GET /presence/:topic?name=N` subscribes to the topic as a
 * member with the metadata `{ name: N }` (without `name`, as an observer that is not listed) and
 * says `{"type":"subscribed"}`; `GET /members/:topic` answers `topics.presence(topic)` as JSON.
 * @param topics - the server's topics (asked at each request, as the server is made after the app)
 */
export function createPresenceApp(topics: () => Topics): Hono {
  const room: EventController = {
    async open(conn, c) {
      const topic = c.req.param('topic') ?? 'lobby'
      const name = c.req.query('name')
      await conn.subscribe(topic, name === undefined ? {} : { presence: { name } })
      conn.send(JSON.stringify({ type: 'subscribed' }))
    },
    message() {},
  }
  return new Hono()
    .get('/presence/:topic', upgrade(room))
    .get('/members/:topic', async (c) => c.json(await topics().presence(c.req.param('topic'))))
}

/** A runtime's `serve` for {@link runBackplaneInstance}: on 127.0.0.1, a port the OS picks. */
export type InstanceServe = (app: Hono) => Promise<{ topics: Topics; address: { port: number } }>

/**
 * A runtime entry of the two-instance scenarios, given the runtime's `serve`: the app of `mode`
 * (`history`: the history app, with history on; `presence`: the presence app, with a short
 * heartbeat; none: the conformance app), its server's topics on Redis at `url` through the
 * `kind` client, and `{"listening": port}` printed once it is ready.
 * @param serve - the runtime's serve
 * @param args - the entry's arguments: the Redis URL, the client, and the mode
 */
export async function runBackplaneInstance(
  serve: InstanceServe,
  [url = '', kind = '', mode = '']: readonly string[],
): Promise<void> {
  const history = mode === 'history'
  const presence = mode === 'presence'
  const server = await serve(
    history
      ? createHistoryApp()
      : presence
        ? createPresenceApp(() => server.topics)
        : createConformanceApp(),
  )
  await useRedisBackplane(server.topics, url, kind, { history, presence })
  console.log(JSON.stringify({ listening: server.address.port }))
}
