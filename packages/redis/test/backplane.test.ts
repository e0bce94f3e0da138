/**
 * The backplane's guarantees across two instances on one real redis-server, with each client.
 */

import { readFileSync } from 'node:fs'
import { type Conn, upgrade } from '@handshake/core'
import { createHub } from '@handshake/core/adapter'
import { connect } from '@handshake/core/testing'
import { Hono } from 'hono'
import { Redis } from 'ioredis'
import { createClient } from 'redis'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
// The suite's redis-server, imported from its source: @handshake/conformance depends on this package.
import { type RedisServer, startRedis } from '../../conformance/src/redis-server.js'
import { decode } from '../src/envelope.js'
import { redisBackplane } from '../src/index.js'
import {
  appClient,
  CLIENT_KINDS,
  type Instance,
  joinHub,
  joinRoom,
  sleep,
  startInstance,
  until,
} from './fixtures.js'

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
})

let topicCounter = 0
const newTopic = (label: string) => `${label}-${process.pid}-${++topicCounter}`

/** How many subscribers Redis counts on a channel. */
async function numsub(channel: string): Promise<number> {
  const answer = await redis.command('PUBSUB', 'NUMSUB', channel)
  if (!Array.isArray(answer) || typeof answer[1] !== 'number') {
    throw new Error(`Unexpected PUBSUB answer: ${JSON.stringify(answer)}`)
  }
  return answer[1]
}

describe.each(CLIENT_KINDS)('two instances on one Redis, with %s', (kind) => {
  let a: Instance
  let b: Instance
  const started: Instance[] = []
  beforeAll(async () => {
    a = await startInstance(kind, redis.url)
    b = await startInstance(kind, redis.url)
    started.push(a, b)
  })
  afterEach(() => {
    // No test may leave a fault behind.
    expect(a.errors).toEqual([])
    expect(b.errors).toEqual([])
  })
  afterAll(async () => {
    await Promise.all(started.map((instance) => instance.stop()))
  })

  it('drives the client it was given', () => {
    expect(a.backplane.clientKind).toBe(kind)
    expect(a.backplane.instanceId).toMatch(/^[0-9a-f]{16}$/)
    expect(a.backplane.instanceId).not.toBe(b.backplane.instanceId)
  })

  it('a publish on A reaches the subscribers on both instances, in order, once', async () => {
    const topic = newTopic('fanout')
    const onA = await joinRoom(a, topic)
    const onB = [await joinRoom(b, topic), await joinRoom(b, topic)]
    const sent = Array.from({ length: 200 }, (_, i) => `message ${i}`)
    for (const message of sent) a.topics.publish(topic, message)
    for (const member of [onA, ...onB]) expect(await member.receive(200)).toEqual(sent)
    // Once: nothing more comes, neither a duplicate nor A's own echo.
    await sleep(200)
    for (const member of [onA, ...onB]) expect(member.received).toHaveLength(200)
  })

  it("a connection's publish skips the sender only, on every instance", async () => {
    const topic = newTopic('sender')
    const sender = await joinRoom(a, topic)
    const sameInstance = await joinRoom(a, topic)
    const otherInstance = await joinRoom(b, topic)
    sender.peer.send('hello')
    expect(await sameInstance.receive(1)).toEqual(['hello'])
    expect(await otherInstance.receive(1)).toEqual(['hello'])
    await sleep(200)
    expect(sender.received).toEqual([])
  })

  it('text stays text and bytes stay bytes, exactly', async () => {
    const topic = newTopic('bytes')
    const onB = await joinRoom(b, topic)
    const all = Uint8Array.from({ length: 256 }, (_, i) => i)
    const backing = Uint8Array.from({ length: 64 }, (_, i) => 255 - i)
    const view = backing.subarray(8, 24)
    const big = Uint8Array.from({ length: 100_000 }, (_, i) => (i * 7919) & 0xff)
    const text = 'é 😀 \u0000 \uffff'
    a.topics.publish(topic, all)
    a.topics.publish(topic, view)
    a.topics.publish(topic, text)
    a.topics.publish(topic, new Uint8Array(0))
    a.topics.publish(topic, '')
    a.topics.publish(topic, big)
    a.topics.publish(topic, 'T0123456789abcdef looks like a header')
    const [first, second, third, empty, emptyText, large, tricky] = await onB.receive(7)
    expect(first).toEqual(all)
    expect(first).toBeInstanceOf(Uint8Array)
    expect(second).toEqual(new Uint8Array(view))
    expect(third).toBe(text)
    expect(empty).toEqual(new Uint8Array(0))
    expect(emptyText).toBe('')
    // (Compared as one string: vitest's deep equality is slow on 100 kB.)
    expect(large).toBeInstanceOf(Uint8Array)
    expect(String(large)).toBe(String(big))
    expect(tricky).toBe('T0123456789abcdef looks like a header')
  })

  it('subscribes a channel only while a local connection holds the topic', async () => {
    const topic = newTopic('held')
    const channel = `handshake:${topic}`
    expect(await numsub(channel)).toBe(0)
    const first = await joinRoom(a, topic)
    const second = await joinRoom(a, topic)
    expect(await numsub(channel)).toBe(1)
    const onB = await joinRoom(b, topic)
    expect(await numsub(channel)).toBe(2)
    first.peer.close(1000)
    await first.peer.closed
    expect(await numsub(channel)).toBe(2)
    second.peer.close(1000)
    await second.peer.closed
    await until(async () => (await numsub(channel)) === 1, 2000, 'A to unsubscribe')
    onB.peer.close(1000)
    await onB.peer.closed
    await until(async () => (await numsub(channel)) === 0, 2000, 'B to unsubscribe')
  })

  it('subscribe() resolves only once Redis confirmed the SUBSCRIBE', async () => {
    const topic = newTopic('confirm')
    // Redis holds every command for 400 ms: the SUBSCRIBE is sent, not confirmed.
    await redis.command('CLIENT', 'PAUSE', '400', 'ALL')
    const started = Date.now()
    let joinedAt: number | undefined
    const joining = joinRoom(b, topic).then((member) => {
      joinedAt = Date.now()
      return member
    })
    await sleep(250)
    expect(joinedAt).toBeUndefined()
    const onB = await joining
    expect(joinedAt! - started).toBeGreaterThanOrEqual(350)
    // Confirmed means counted: a publish right after it is not missed.
    a.topics.publish(topic, 'right after')
    expect(await onB.receive(1)).toEqual(['right after'])
  })

  it('a publish right after each subscribe() is never missed', async () => {
    for (let i = 0; i < 20; i++) {
      const topic = newTopic('window')
      const onB = await joinRoom(b, topic)
      a.topics.publish(topic, `first ${i}`)
      expect(await onB.receive(1)).toEqual([`first ${i}`])
      onB.peer.close(1000)
    }
  })

  it('quick subscribe and unsubscribe sequences end in the latest state', async () => {
    // A connection of b's hub that does nothing but hold topics, driven by the test.
    let conn: Conn | undefined
    const holder = new Hono().get(
      '/',
      upgrade({
        async serve(c) {
          conn = c
          for await (const _ of c) {
            // until the end
          }
        },
      }),
    )
    const peer = await connect(holder, '/', { hub: b.hub })
    await until(() => conn !== undefined, 2000, 'the connection')
    const subscriber = conn as Conn
    const delivered: unknown[] = []
    void (async () => {
      for (;;) delivered.push((await peer.read()).data)
    })().catch(() => {})
    const settled: Promise<unknown>[] = []
    const topic = newTopic('flap')
    const channel = `handshake:${topic}`
    // Join and leave 25 times in one tick, ending subscribed...
    for (let i = 0; i < 25; i++) {
      settled.push(subscriber.subscribe(topic))
      subscriber.unsubscribe(topic)
    }
    settled.push(subscriber.subscribe(topic))
    await Promise.all(settled)
    await sleep(100)
    expect(await numsub(channel)).toBe(1)
    a.topics.publish(topic, 'after the flapping')
    await until(() => delivered.length > 0, 2000, 'the delivery')
    await sleep(100)
    expect(delivered).toEqual(['after the flapping'])
    const onB = await joinRoom(b, topic)
    // ...then ending unsubscribed.
    onB.peer.close(1000)
    await onB.peer.closed
    for (let i = 0; i < 25; i++) {
      subscriber.unsubscribe(topic)
      settled.push(subscriber.subscribe(topic))
    }
    subscriber.unsubscribe(topic)
    await Promise.all(settled)
    await until(async () => (await numsub(channel)) === 0, 2000, 'the channel to be released')
    await sleep(100)
    expect(await numsub(channel)).toBe(0)
    peer.close(1000)
  })

  it('a PUBLISH sent twice is delivered once, and a skipped number is counted as a gap', async () => {
    const topic = newTopic('repeat')
    const channel = `handshake:${topic}`
    const onB = await joinRoom(b, topic)
    // What A really sends, as Redis carries it.
    const spy = new Redis(redis.url)
    const sent: string[] = []
    spy.on('message', (_channel: string, message: string) => sent.push(message))
    await spy.subscribe(channel)
    try {
      const before = {
        repeats: b.backplane.repeatsDropped,
        gaps: b.backplane.gaps,
        missed: b.backplane.missedMessages,
      }
      a.topics.publish(topic, 'first')
      await until(() => sent.length === 1 && onB.received.length === 1, 2000, 'the first')
      // ioredis resends a PUBLISH whose reply was lost, although Redis ran it: the same
      // envelope again, twice here.
      await redis.command('PUBLISH', channel, sent[0]!)
      await redis.command('PUBLISH', channel, sent[0]!)
      a.topics.publish(topic, 'second')
      await until(() => sent.length === 4, 2000, 'the second')
      expect(await onB.receive(2)).toEqual(['first', 'second'])
      // A's next number skipped by three: two messages missed.
      const second = decode('', sent[3]!)
      if (second.kind !== 'message') throw new Error(`Not an envelope: ${sent[3]}`)
      const skipped = (second.sequence + 3).toString(16)
      await redis.command('PUBLISH', channel, `t${a.backplane.instanceId}${skipped}:after a gap`)
      expect(await onB.receive(3)).toEqual(['first', 'second', 'after a gap'])
      await sleep(200)
      expect(onB.received).toEqual(['first', 'second', 'after a gap'])
      expect(b.backplane.repeatsDropped - before.repeats).toBe(2)
      expect(b.backplane.gaps - before.gaps).toBe(1)
      expect(b.backplane.missedMessages - before.missed).toBe(2)
    } finally {
      spy.disconnect()
    }
  })

  it('a repeat of an active publisher is dropped after a thousand others were heard on the topic', async () => {
    const topic = newTopic('publishers')
    const channel = `handshake:${topic}`
    const onB = await joinRoom(b, topic)
    const spy = new Redis(redis.url)
    const sent: string[] = []
    spy.on('message', (_channel: string, message: string) => sent.push(message))
    await spy.subscribe(channel)
    const publisher = new Redis(redis.url)
    try {
      // 1,023 instances long gone (each restart is a new id), then A, then one more.
      const gone = (i: number) => `t${(0xdead0000 + i).toString(16).padStart(16, '0')}1;gone ${i}`
      await Promise.all(Array.from({ length: 1023 }, (_, i) => publisher.publish(channel, gone(i))))
      a.topics.publish(topic, 'first')
      await until(() => sent.length === 1024, 5000, "A's message")
      await publisher.publish(channel, gone(1023))
      // ioredis resends A's PUBLISH: A was heard last, so it is remembered.
      await publisher.publish(channel, sent[1023]!)
      a.topics.publish(topic, 'second')
      await until(() => onB.received.includes('second'), 5000, 'the second')
      await sleep(100)
      expect(onB.received.filter((m) => m === 'first')).toEqual(['first'])
    } finally {
      spy.disconnect()
      publisher.disconnect()
    }
  })

  it('ignores what other programs publish on its channels', async () => {
    const topic = newTopic('foreign')
    const onB = await joinRoom(b, topic)
    for (const message of ['', 'hello', 'Tshort', 'B0123456789abcdef\u0100']) {
      await redis.command('PUBLISH', `handshake:${topic}`, message)
    }
    a.topics.publish(topic, 'ours')
    expect(await onB.receive(1)).toEqual(['ours'])
    await sleep(100)
    expect(onB.received).toEqual(['ours'])
  })
})

describe.each(CLIENT_KINDS)('options and lifecycle, with %s', (kind) => {
  it('a prefix keeps apps that share a Redis apart', async () => {
    const one = await startInstance(kind, redis.url, { prefix: 'app-one:' })
    const two = await startInstance(kind, redis.url, { prefix: 'app-two:' })
    const other = await startInstance(kind, redis.url, { prefix: 'app-one:' })
    try {
      const topic = newTopic('prefix')
      const onTwo = await joinRoom(two, topic)
      const onOther = await joinRoom(other, topic)
      expect(await numsub(`app-one:${topic}`)).toBe(1)
      one.topics.publish(topic, 'for app one')
      expect(await onOther.receive(1)).toEqual(['for app one'])
      await sleep(200)
      expect(onTwo.received).toEqual([])
    } finally {
      await Promise.all([one.stop(), two.stop(), other.stop()])
    }
  })

  it('closeBackplane() releases its subscriptions and leaves the app client open', async () => {
    const instance = await startInstance(kind, redis.url)
    const topic = newTopic('close')
    await joinRoom(instance, topic)
    expect(await numsub(`handshake:${topic}`)).toBe(1)
    await instance.topics.closeBackplane()
    await until(async () => (await numsub(`handshake:${topic}`)) === 0, 2000, 'the release')
    // The app's client is still the app's.
    await expect(instance.app.client.ping()).resolves.toBe('PONG')
    // Publishing after the close is a local publish, and nothing throws.
    instance.topics.publish(topic, 'local only')
    await instance.app.close()
    expect(instance.errors).toEqual([])
  })

  it('starting with Redis unreachable reports it once, and restores when Redis is back', async () => {
    const down = await startRedis()
    await down.kill()
    const instance = await startInstance(kind, down.url, { maxReconnectDelay: 200 }, false)
    try {
      expect(instance.errors).toHaveLength(1)
      const restored = instance.nextRestore()
      await down.restart()
      await restored
      expect(instance.errors).toHaveLength(1)
      expect(instance.backplane.healthy).toBe(true)
    } finally {
      await instance.stop()
      await down.stop()
    }
  })

  it('a subscribe while useBackplane() is starting: one session, no false outage, each message once', async () => {
    const other = await startInstance(kind, redis.url)
    const app = await appClient(kind, redis.url)
    const errors: unknown[] = []
    const hub = createHub({ onError: (err) => errors.push(err) })
    const topics = hub.topics
    const backplane = redisBackplane({ client: app.client })
    try {
      const topic = newTopic('starting')
      const pubsubClients = async () =>
        String(await redis.command('CLIENT', 'LIST', 'TYPE', 'pubsub'))
          .split('\n')
          .filter((line) => line.includes('id=')).length
      const before = await pubsubClients()
      // Redis holds every command for 300 ms, so the subscriber connection's handshake, and
      // with it start(), is still pending when the room subscribes.
      await redis.command('CLIENT', 'PAUSE', '300', 'ALL')
      const using = topics.useBackplane(backplane)
      const joining = joinHub(hub, topic)
      await using
      const member = await joining
      expect(await numsub(`handshake:${topic}`)).toBe(1)
      // Wait out any restore a false outage would have started, then count the deliveries.
      await sleep(300)
      other.topics.publish(topic, 'once')
      expect(await member.receive(1)).toEqual(['once'])
      await sleep(200)
      expect(member.received).toEqual(['once'])
      expect(errors).toEqual([])
      expect(backplane.healthy).toBe(true)
      // One subscriber connection more: this backplane's.
      expect(await pubsubClients()).toBe(before + 1)
      expect(await numsub(`handshake:${topic}`)).toBe(1)
    } finally {
      await topics.closeBackplane()
      await app.close()
      await other.stop()
    }
  })

  const ends = kind === 'ioredis' ? (['quit'] as const) : (['quit', 'close'] as const)
  it.each(ends)(
    "the README's shutdown order, closeBackplane() then client.%s(), logs nothing",
    async (end) => {
      const logged: unknown[][] = []
      const hub = createHub({ logger: { error: (...args) => logged.push(args) } })
      const topics = hub.topics
      const client =
        kind === 'ioredis'
          ? new Redis(redis.url).on('error', (err) => logged.push(['client', err]))
          : await createClient({ url: redis.url })
              .on('error', (err) => logged.push(['client', err]))
              .connect()
      await topics.useBackplane(redisBackplane({ client }))
      const topic = newTopic('shutdown-order')
      const members = [await joinHub(hub, topic), await joinHub(hub, `${topic}-2`)]
      topics.publish(topic, 'before the shutdown')
      await members[0]!.receive(1)
      // A connection leaving as the shutdown starts: its UNSUBSCRIBE is in flight (Redis
      // holds it for 300 ms) when the backplane closes.
      await redis.command('CLIENT', 'PAUSE', '300', 'ALL')
      members[1]!.peer.close(1000)
      await until(() => topics.subscribers(`${topic}-2`) === 0, 2000, 'the leave')
      await topics.closeBackplane()
      if (end === 'close') await (client as ReturnType<typeof createClient>).close()
      else await client.quit()
      await sleep(300)
      expect(logged).toEqual([])
    },
  )

  it("the README's setup is quiet while Redis is down: one line, the Topics' report", async () => {
    // The error listener the README's snippet for this client gives (none, if it gives none).
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
    const snippets = [...readme.matchAll(/```ts\n(\/\/ backplane\.ts\n[\s\S]*?)```/g)].map(
      (m) => m[1]!,
    )
    const snippet = snippets.find((code) =>
      code.includes(kind === 'ioredis' ? "from 'ioredis'" : "from 'redis'"),
    )
    expect(snippet, 'the README has a setup snippet for this client').toBeDefined()
    const listenerSource = /client\.on\('error', (.+)\)\n/.exec(snippet!)?.[1]
    const down = await startRedis()
    const lines: unknown[][] = []
    const spy = vi.spyOn(console, 'error').mockImplementation((...args) => {
      lines.push(args)
    })
    // (Made once console.error is watched, for a listener that names it.)
    const listener = listenerSource
      ? (new Function(`return ${listenerSource}`)() as (err: unknown) => void)
      : undefined
    const hub = createHub()
    const topics = hub.topics
    let client: Redis | ReturnType<typeof createClient> | undefined
    try {
      if (kind === 'ioredis') {
        client = new Redis(down.url)
        if (listener) client.on('error', listener)
      } else {
        client = createClient({ url: down.url })
        if (listener) client.on('error', listener)
        await client.connect()
      }
      await topics.useBackplane(redisBackplane({ client }))
      await joinHub(hub, newTopic('quiet'))
      const restored = new Promise((resolve) =>
        topics.addEventListener('restore', resolve, { once: true }),
      )
      // An outage of 1.5 s: several reconnect attempts of both connections.
      await down.kill()
      await sleep(1500)
      await down.restart()
      await restored
      expect(lines.map((line) => line.map(String).join(' '))).toEqual([
        expect.stringMatching(/^Topics backplane failed/),
      ])
    } finally {
      spy.mockRestore()
      await topics.closeBackplane()
      if (client instanceof Redis) client.disconnect()
      else client?.destroy()
      await down.stop()
    }
  })

  it('refuses a client of another kind, and a backplane given twice', async () => {
    expect(() => redisBackplane({ client: {} as never })).toThrow(TypeError)
    const app = await appClient(kind, redis.url)
    try {
      const backplane = redisBackplane({ client: app.client })
      await createHub().topics.useBackplane(backplane)
      await expect(createHub().topics.useBackplane(backplane)).rejects.toThrow(/started already/)
      await backplane.close()
    } finally {
      await app.close()
    }
  })
})
