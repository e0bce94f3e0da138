/**
 * A client that comes back on another instance, one that is behind it, while the topic's history
 * was lost: the server's gap must not take it back to positions it was given already. Node only:
 * the two hubs share the core test kit's memory backplane, in this process.
 * @module
 */
import type { Backplane } from '@handshake/core/adapter'
import { memoryBackplane } from '@handshake/core/testing'
import { serve } from '@handshake/node'
import { afterEach, expect, it } from 'vitest'
import WebSocket from 'ws'
import { type Client, createClient, type Gap, type Position } from '../src/index.js'
import { channels, createChannelsApp, useFeedHistory } from './app.js'
import { startProxy } from './proxy.js'
import { until } from './suite.js'

/** A backplane whose messages to this instance wait while `held` is set, as a slow pub/sub. */
function holding(inner: Backplane) {
  const waiting: (() => void)[] = []
  const control = {
    held: false,
    release() {
      control.held = false
      for (const deliver of waiting.splice(0)) deliver()
    },
  }
  const backplane: Backplane = {
    start: (sink) =>
      inner.start({
        message(topic, data, position, origin) {
          if (control.held) waiting.push(() => sink.message(topic, data, position, origin))
          else sink.message(topic, data, position, origin)
        },
        down: (error) => sink.down(error),
        up: () => sink.up(),
        topics: () => sink.topics(),
        presence: (topic, joins, leaves) => sink.presence(topic, joins, leaves),
        members: (topic) => sink.members(topic),
      }),
    subscribe: (topic) => inner.subscribe(topic),
    unsubscribe: (topic) => inner.unsubscribe(topic),
    publish: (topic, data, origin) => inner.publish(topic, data, origin),
    close: () => inner.close(),
    history: inner.history,
  }
  return { backplane, control }
}

const stops: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop()
})

async function instance(backplane: Backplane) {
  const server = await serve(createChannelsApp(), { port: 0, onListen() {} })
  stops.push(() => server.shutdown({ timeout: 1000 }))
  useFeedHistory(server.topics)
  await server.topics.useBackplane(backplane)
  return { url: `http://127.0.0.1:${server.address.port}`, topics: server.topics }
}

function open(url: string): Client<typeof channels> {
  const client = createClient<typeof channels>(`${url}/ws`, {
    WebSocket: WebSocket as never,
    minDelay: 10,
    maxDelay: 50,
  })
  stops.push(async () => client.close())
  return client
}

it('never delivers a message twice, nor goes back in an epoch, when it resumes on a hub behind it while the history is lost', async () => {
  const bus = memoryBackplane()
  const a = await instance(bus.backplane())
  const slow = holding(bus.backplane())
  const b = await instance(slow.backplane)
  const proxy = await startProxy(a.url)
  stops.push(() => proxy.stop())
  const topic = 'feeds/moved'
  const publish = (n: number) => channels.publish(a.topics, topic, { n })

  // A client on B keeps the topic held there.
  const watcher = open(b.url)
  const watched: number[] = []
  watcher.subscribe(topic, { message: (data) => watched.push(data.n) })
  const client = open(proxy.url)
  const got: number[] = []
  const positions: Position[] = []
  const gaps: Gap[] = []
  let subscribed = 0
  const subscription = client.subscribe(topic, {
    message(data, position) {
      got.push(data.n)
      if (position) positions.push(position)
    },
    gap(gap) {
      gaps.push(gap)
      if (gap.position) positions.push(gap.position)
    },
    subscribed: () => subscribed++,
  })
  await until(
    () => subscribed === 1 && watched.length === 0 && b.topics.subscribers(topic) === 1,
    'both subscriptions',
  )
  for (let n = 1; n <= 10; n++) publish(n)
  await until(() => got.length === 10 && watched.length === 10, 'the first ten')
  // B falls behind: 11 to 15 are on their way to it while the client is given them on A.
  slow.control.held = true
  for (let n = 11; n <= 15; n++) publish(n)
  await until(() => got.length === 15, 'the next five')
  const old = subscription.position as Position
  expect(old.offset).toBe(15)
  // The history is lost (a new epoch from the next message on), and the client moves to B.
  bus.reset()
  proxy.target = b.url
  proxy.cut()
  await until(() => b.topics.subscribers(topic) === 2, 'the resubscription on B')
  await new Promise((resolve) => setTimeout(resolve, 50))
  // What was on its way to B comes after B moved to the new epoch, and then the first
  // message of that epoch.
  slow.control.release()
  publish(16)
  await until(() => got.includes(16), 'the first message of the new epoch')
  await until(() => watched.includes(16), 'the watcher')

  expect(got).toEqual(Array.from({ length: 16 }, (_, i) => i + 1))
  for (const [index, position] of positions.entries()) {
    const before = positions[index - 1]
    if (before && before.epoch === position.epoch) {
      expect(position.offset, `position ${index} goes back`).toBeGreaterThanOrEqual(before.offset)
    }
  }
  const last = subscription.position as Position
  expect(last.epoch).not.toBe(old.epoch)
  expect(last.offset).toBe(1)
  // The client is told once that the history was lost, where it goes on from.
  expect(gaps).toEqual([{ topic, reason: 'epoch', position: { epoch: last.epoch, offset: 0 } }])
})
