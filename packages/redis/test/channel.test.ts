/**
 * Channel names: two topics never share a Redis channel, lone surrogates included, alone and
 * through a real redis-server with each client.
 */
import type { MessageData } from '@handshake/core'
import type { BackplaneSink } from '@handshake/core/adapter'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type RedisServer, startRedis } from '../../conformance/src/redis-server.js'
import { channelOf, topicOf } from '../src/channel.js'
import { redisBackplane } from '../src/index.js'
import { appClient, CLIENT_KINDS, until } from './fixtures.js'

const utf8 = new TextEncoder()
const fromUtf8 = new TextDecoder()
/** What the clients do to a channel name: UTF-8 on the way in, UTF-8 on the way out. */
const throughRedis = (channel: string) => fromUtf8.decode(utf8.encode(channel))
/** Any UTF-16 string, lone surrogates and U+FFFF included. */
const anyUtf16 = fc
  .array(fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.constantFrom(0xd800, 0xdbff, 0xffff)))
  .map((units) => String.fromCharCode(...units))

describe('channel names', () => {
  it('carry every topic through UTF-8 and back, one channel per topic', () => {
    fc.assert(
      fc.property(anyUtf16, anyUtf16, (one, other) => {
        const channel = throughRedis(channelOf('handshake:', one))
        expect(topicOf('handshake:', channel)).toBe(one)
        if (one !== other) {
          expect(channel).not.toBe(throughRedis(channelOf('handshake:', other)))
        }
      }),
    )
  })

  it('leave a well-formed topic as it is, and refuse what is not ours', () => {
    expect(channelOf('handshake:', 'room-1 😀')).toBe('handshake:room-1 😀')
    expect(topicOf('other:', 'handshake:room')).toBeUndefined()
    expect(topicOf('handshake:', 'handshake:\uffffnot hex')).toBeUndefined()
  })
})

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
})

/** A sink that records what the backplane delivers. */
function recordingSink(received: [string, MessageData][]): BackplaneSink {
  return {
    message: (topic, data) => received.push([topic, data]),
    down: (error) => {
      throw error
    },
    up: () => {},
    topics: () => [],
    presence: () => {},
    members: () => [],
  }
}

describe.each(CLIENT_KINDS)('lone surrogates across instances, with %s', (kind) => {
  it('"x\\uD800" and "x\\uDBFF" are two topics, not one channel', async () => {
    const clients = [await appClient(kind, redis.url), await appClient(kind, redis.url)]
    const [a, b] = clients.map((app) => redisBackplane({ client: app.client }))
    const received: [string, MessageData][] = []
    try {
      await a!.start(recordingSink([]))
      await b!.start(recordingSink(received))
      await b!.subscribe('x\ud800')
      await b!.subscribe('x\udbff')
      a!.publish('x\ud800', 'for the first')
      a!.publish('x\udbff', 'for the second')
      await until(() => received.length >= 2, 2000, 'the two messages')
      expect(received).toEqual([
        ['x\ud800', 'for the first'],
        ['x\udbff', 'for the second'],
      ])
    } finally {
      await Promise.all([a?.close(), b?.close()])
      await Promise.all(clients.map((app) => app.close()))
    }
  })
})
