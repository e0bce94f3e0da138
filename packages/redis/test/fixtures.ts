/**
 * Instances for the tests: a Topics on a Redis backplane with a real client of either kind,
 * and room connections through the test kit.
 * @module
 */
import {
  type EventController,
  type Hub,
  type MessageData,
  type Topics,
  upgrade,
} from '@handshake/core'
import { createHub } from '@handshake/core/adapter'
import { connect, type TestPeer } from '@handshake/core/testing'
import { Hono } from 'hono'
import { Redis } from 'ioredis'
import { createClient } from 'redis'
import { type RedisBackplane, type RedisBackplaneOptions, redisBackplane } from '../src/index.js'

/** The two clients the package supports. */
export const CLIENT_KINDS = ['ioredis', 'node-redis'] as const
export type ClientKind = (typeof CLIENT_KINDS)[number]

/** The app's own client, made as the README says, with an error listener as both clients ask. */
export interface AppClient {
  readonly client: RedisBackplaneOptions['client']
  /** Errors the app's client emitted (it reconnects by itself). */
  readonly errors: unknown[]
  close(): Promise<void>
}

/**
 * Makes the app's client. A node-redis client must be connected first; `awaitConnect: false`
 * starts connecting without waiting, for a Redis that is down.
 */
export async function appClient(
  kind: ClientKind,
  url: string,
  awaitConnect = true,
): Promise<AppClient> {
  const errors: unknown[] = []
  if (kind === 'ioredis') {
    const client = new Redis(url)
    client.on('error', (err) => errors.push(err))
    return {
      client,
      errors,
      close: async () => {
        client.disconnect()
      },
    }
  }
  const client = createClient({ url })
  client.on('error', (err) => errors.push(err))
  const connected = client.connect()
  if (awaitConnect) await connected
  else connected.catch(() => {})
  return {
    client,
    errors,
    close: async () => {
      client.destroy()
    },
  }
}

/** One app instance: its hub (its Topics), its backplane, and what it reported. */
export interface Instance {
  readonly hub: Hub
  readonly topics: Topics
  readonly backplane: RedisBackplane
  readonly app: AppClient
  /** What the Topics' onError got. */
  readonly errors: unknown[]
  /** When each 'restore' event fired (Date.now()). */
  readonly restores: number[]
  /** Resolves on the next 'restore' event. */
  nextRestore(timeoutMs?: number): Promise<number>
  stop(): Promise<void>
}

export async function startInstance(
  kind: ClientKind,
  url: string,
  options: Omit<RedisBackplaneOptions, 'client'> = {},
  awaitConnect = true,
): Promise<Instance> {
  const app = await appClient(kind, url, awaitConnect)
  const errors: unknown[] = []
  const restores: number[] = []
  const hub = createHub({ onError: (err) => errors.push(err) })
  const topics = hub.topics
  topics.addEventListener('restore', () => restores.push(Date.now()))
  const backplane = redisBackplane({ client: app.client, ...options })
  await topics.useBackplane(backplane)
  return {
    hub,
    topics,
    backplane,
    app,
    errors,
    restores,
    nextRestore: (timeoutMs = 15_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`No 'restore' event in ${timeoutMs} ms`)),
          timeoutMs,
        )
        topics.addEventListener(
          'restore',
          () => {
            clearTimeout(timer)
            resolve(Date.now())
          },
          { once: true },
        )
      }),
    async stop() {
      await topics.closeBackplane()
      await app.close()
    },
  }
}

/**
 * A room: the connection subscribes to `?room=` on open and says `subscribed` once that
 * resolved; each message it sends is published to the room.
 */
export const room: EventController = {
  async open(conn, c) {
    await conn.subscribe(c.req.query('room') ?? 'lobby')
    await conn.send('subscribed')
  },
  message(conn, msg) {
    for (const topic of conn.topics) conn.publish(topic, msg.data)
  },
}

/** A connection in a room, with everything it received so far. */
export interface Member {
  readonly peer: TestPeer
  /** Every message received after `subscribed`, in order. */
  readonly received: MessageData[]
  /** Resolves once `count` messages were received, or fails after `timeoutMs`. */
  receive(count: number, timeoutMs?: number): Promise<MessageData[]>
}

/** Connects to a room of an instance; resolves once subscribed. */
export function joinRoom(instance: Instance, topic: string): Promise<Member> {
  return joinHub(instance.hub, topic)
}

/** An app whose route `/` runs `controller`: connect to it with a hub, `{ hub }`. */
export function appOf(controller: EventController): Hono {
  return new Hono().get('/', upgrade(controller))
}

/** Connects to a room of a hub; resolves once subscribed. */
export async function joinHub(hub: Hub, topic: string): Promise<Member> {
  const peer = await connect(appOf(room), `/?room=${encodeURIComponent(topic)}`, { hub })
  const first = await peer.read()
  if (first.data !== 'subscribed') throw new Error(`Unexpected first message: ${first.data}`)
  const received: MessageData[] = []
  void (async () => {
    for (;;) {
      try {
        received.push((await peer.read()).data)
      } catch {
        return
      }
    }
  })()
  return {
    peer,
    received,
    async receive(count, timeoutMs = 5000) {
      await until(
        () => received.length >= count,
        timeoutMs,
        `${count} messages (got ${received.length})`,
      )
      return received.slice(0, count)
    },
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Polls until `check` returns true, or fails after `timeoutMs`. */
export async function until(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  what = 'a condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`)
    await sleep(10)
  }
}
