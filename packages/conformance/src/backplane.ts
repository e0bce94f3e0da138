/**
 * SPEC "Round 2 / Backplane": two servers of the same runtime, in two processes, on one real
 * redis-server; a message published on instance A reaches the subscribers on both instances,
 * in order, once, with each Redis client.
 *
 * ```ts
 * // packages/adapter-x/test/backplane.test.ts
 * import { backplaneSuite } from '@handshake/conformance'
 * backplaneSuite({
 *   name: 'x',
 *   // Serves createConformanceApp(), then useRedisBackplane(server.topics, redisUrl, client).
 *   start: ({ redisUrl, client }) => startMyRuntime(redisUrl, client),
 * })
 * ```
 * @module
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectWs, type Peer, type PeerMessage } from './peers.js'
import { type RedisServer, startRedis } from './redis-server.js'
import { newId, patternBytes, withId } from './scenarios/support.js'
import type { RunningServer } from './targets.js'

/** An instance as the two-instance scenarios use it: where it listens, and its stop. */
type Instance = Pick<RunningServer, 'url' | 'stop'>

/** The Redis clients the scenario runs with (see `backplane-setup.ts`). */
export const BACKPLANE_CLIENTS = ['ioredis', 'node-redis'] as const
/** One of {@link BACKPLANE_CLIENTS}. */
export type BackplaneClient = (typeof BACKPLANE_CLIENTS)[number]

/** A runtime that can start instances of the conformance app on a Redis backplane. */
export interface BackplaneTarget {
  /** A name for the test titles, such as `'bun'`. */
  name: string
  /**
   * Starts one instance, in its own process: the conformance app, with its server's topics on
   * `useRedisBackplane(server.topics, redisUrl, client)`, on 127.0.0.1 and a free port.
   */
  start(options: { redisUrl: string; client: BackplaneClient }): Promise<Instance>
}

/** How long to wait for a duplicate that must not come. */
const QUIET_MS = 300

/** The message `i` of a sequence: mostly text, every fifth one bytes. */
function message(i: number): string | Uint8Array {
  return i % 5 === 4 ? patternBytes(1000 + i, i) : `message ${i}`
}

function asMessage(data: string | Uint8Array): PeerMessage {
  return typeof data === 'string' ? { type: 'text', data } : { type: 'binary', data }
}

/** Resolves with the next message, or undefined when none arrives within `ms`. */
async function nothingWithin(peer: Peer, ms: number): Promise<PeerMessage | undefined> {
  try {
    return await peer.read(ms)
  } catch {
    return undefined
  }
}

/**
 * Registers the two-instance scenarios: for each Redis client, two instances of the target on
 * one redis-server that the suite starts on a free port and stops.
 * @param target - how to start an instance of the runtime
 */
export function backplaneSuite(target: BackplaneTarget): void {
  describe(`two instances on one Redis: ${target.name}`, () => {
    let redis: RedisServer | undefined
    beforeAll(async () => {
      redis = await startRedis()
    })
    afterAll(async () => {
      await redis?.stop()
    })

    describe.each(BACKPLANE_CLIENTS)('with %s', (client) => {
      let a: Instance | undefined
      let b: Instance | undefined
      const peers: Peer[] = []
      const join = async (server: Instance | undefined, route: string, topic: string) => {
        if (!server) throw new Error(`The ${target.name} instances did not start`)
        const peer = await connectWs(server.url, withId(`/${route}/${topic}`, newId(route)))
        peers.push(peer)
        expect(await peer.read()).toEqual({ type: 'text', data: 'joined' })
        return peer
      }
      beforeAll(async () => {
        const redisUrl = `redis://127.0.0.1:${redis!.port}`
        ;[a, b] = await Promise.all([
          target.start({ redisUrl, client }),
          target.start({ redisUrl, client }),
        ])
      })
      afterAll(async () => {
        for (const peer of peers) peer.vanish()
        await Promise.all([a?.stop(), b?.stop()])
      })

      it('a message published on A reaches the subscribers on both instances, in order, once', async () => {
        const topic = newId('two-instances')
        const publisher = await join(a, 'topic', topic)
        const subscribers = [
          await join(a, 'topic', topic),
          await join(a, 'topic-events', topic),
          await join(b, 'topic', topic),
          await join(b, 'topic-events', topic),
        ]
        const sent = Array.from({ length: 50 }, (_, i) => message(i))
        for (const data of sent) publisher.send(data)
        for (const subscriber of subscribers) {
          for (const data of sent) expect(await subscriber.read()).toEqual(asMessage(data))
        }
        // Once: no duplicate, and no echo for the publisher, on either instance.
        for (const peer of [publisher, ...subscribers]) {
          expect(await nothingWithin(peer, QUIET_MS)).toBeUndefined()
        }
      })

      it('a publish from an HTTP route on B reaches both instances, text and bytes', async () => {
        const topic = newId('two-instances-http')
        const subscribers = [await join(a, 'topic', topic), await join(b, 'topic', topic)]
        const sent = ['from B', patternBytes(4096, 7), '']
        for (const data of sent) {
          const response = await fetch(`${b!.url}/publish/${topic}`, {
            method: 'POST',
            body: data as BodyInit,
            headers: {
              'content-type': typeof data === 'string' ? 'text/plain' : 'application/octet-stream',
            },
          })
          // B counts its local subscribers only.
          expect(await response.json()).toEqual({ subscribers: 1 })
        }
        for (const subscriber of subscribers) {
          for (const data of sent) expect(await subscriber.read()).toEqual(asMessage(data))
          expect(await nothingWithin(subscriber, QUIET_MS)).toBeUndefined()
        }
      })
    })
  })
}
