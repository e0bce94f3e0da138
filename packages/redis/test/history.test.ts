/**
 * The backplane's history on Redis Streams, against a real redis-server, with each client and a
 * hand-made sink (the core's side is tested with the core): positions, reads, the scripts'
 * guarantees, and the pending bound.
 */
import type { MessageData, Position } from '@handshake/core'
import type { BackplaneSink } from '@handshake/core/adapter'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
// The suite's redis-server, imported from its source: @handshake/conformance depends on this package.
import { type RedisServer, startRedis } from '../../conformance/src/redis-server.js'
import { historyKeys, PUBLISH_SCRIPT } from '../src/history.js'
import { type RedisBackplane, type RedisBackplaneOptions, redisBackplane } from '../src/index.js'
import { type AppClient, appClient, CLIENT_KINDS, sleep, until } from './fixtures.js'

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
})

let topicCounter = 0
const newTopic = (label: string) => `${label}-${process.pid}-${++topicCounter}`
const HISTORY = { size: 100, ttl: 60_000 }

/** What a hand-made sink received. */
interface Received {
  readonly topic: string
  readonly data: MessageData
  readonly position: Position | undefined
  readonly origin: object | undefined
}

/** A backplane started with a sink that records everything. */
interface Started {
  readonly backplane: RedisBackplane
  readonly app: AppClient
  readonly received: Received[]
  readonly errors: unknown[]
  readonly ups: number[]
  /** The messages of one topic. */
  on(topic: string): Received[]
  stop(): Promise<void>
}

async function start(
  kind: (typeof CLIENT_KINDS)[number],
  options: Omit<RedisBackplaneOptions, 'client'> = {},
): Promise<Started> {
  const app = await appClient(kind, redis.url)
  const backplane = redisBackplane({ client: app.client, ...options })
  const received: Received[] = []
  const errors: unknown[] = []
  const ups: number[] = []
  const sink: BackplaneSink = {
    message: (topic, data, position, origin) => received.push({ topic, data, position, origin }),
    down: (error) => errors.push(error),
    up: () => ups.push(Date.now()),
    topics: () => [],
    presence: () => {},
    members: () => [],
  }
  await backplane.start(sink)
  return {
    backplane,
    app,
    received,
    errors,
    ups,
    on: (topic) => received.filter((message) => message.topic === topic),
    async stop() {
      await backplane.close()
      await app.close()
    },
  }
}

describe.each(CLIENT_KINDS)('history on Redis Streams, with %s', (kind) => {
  const started: Started[] = []
  const instance = async (options: Omit<RedisBackplaneOptions, 'client'> = {}) => {
    const one = await start(kind, options)
    started.push(one)
    return one
  }
  afterEach(async () => {
    await Promise.all(started.splice(0).map((one) => one.stop()))
  })

  it('gives each message the next offset across instances, and every instance a copy; the own one carries its origin', async () => {
    const a = await instance()
    const b = await instance()
    const topic = newTopic('positions')
    await Promise.all([a.backplane.subscribe(topic), b.backplane.subscribe(topic)])
    const fromA = { connection: 'on A' }
    const fromB = { connection: 'on B' }
    for (let i = 0; i < 50; i++) {
      a.backplane.history.publish(topic, `a${i}`, HISTORY, fromA)
      b.backplane.history.publish(topic, `b${i}`, HISTORY, fromB)
    }
    await until(() => a.on(topic).length === 100 && b.on(topic).length === 100, 5000, 'copies')
    for (const [one, own] of [
      [a, fromA],
      [b, fromB],
    ] as const) {
      const messages = one.on(topic)
      const epoch = messages[0]!.position!.epoch
      expect(epoch).toMatch(/^[0-9a-f]{16}[0-9a-z]+$/)
      // Every offset once, in order, from 1.
      expect(messages.map((m) => m.position)).toEqual(
        Array.from({ length: 100 }, (_, i) => ({ epoch, offset: i + 1 })),
      )
      // The own ones carry the object given, the others none.
      for (const message of messages) {
        const mine = String(message.data)[0] === (own === fromA ? 'a' : 'b')
        expect(message.origin).toBe(mine ? own : undefined)
      }
      // One instance's messages in the order it published them.
      for (const prefix of ['a', 'b']) {
        expect(
          messages.map((m) => String(m.data)).filter((data) => data.startsWith(prefix)),
        ).toEqual(Array.from({ length: 50 }, (_, i) => `${prefix}${i}`))
      }
    }
    // Both saw one order.
    expect(a.on(topic).map((m) => m.data)).toEqual(b.on(topic).map((m) => m.data))
    await until(() => a.backplane.pendingPublishes === 0, 5000, 'the answers')
    expect(a.errors).toEqual([])
  })

  it('an own message whose copy never came back keeps its origin for a read, however many own copies came back since', async () => {
    const a = await instance()
    const lost = newTopic('origin-lost')
    const busy = newTopic('origin-busy')
    const sender = { connection: 'on A' }
    // Published on a topic whose copy does not come back here (not subscribed: as when the
    // subscriber connection is lost), then a lot of own traffic whose copies do come back.
    a.backplane.history.publish(lost, 'mine', HISTORY, sender)
    await a.backplane.subscribe(busy)
    const other = { connection: 'another on A' }
    // In batches within the pending bound (and its share per topic and connection).
    for (let batch = 0; batch < 21; batch++) {
      for (let i = 0; i < 500; i++) a.backplane.history.publish(busy, `x${i}`, HISTORY, other)
      await until(() => a.backplane.pendingPublishes === 0, 10_000, 'the answers')
    }
    await until(() => a.on(busy).length === 10_500, 10_000, 'the copies')
    const read = await a.backplane.history.read(lost, { epoch: 'none', offset: 0 }, 10)
    expect(read.messages.map((m) => [m.data, m.origin])).toEqual([['mine', sender]])
  }, 60_000)

  it('reads after a position: what follows it, the latest position, and whether it is complete', async () => {
    const a = await instance()
    const topic = newTopic('read')
    // A topic with no history: an empty epoch, which the first publish then uses.
    const empty = await a.backplane.history.read(topic, undefined, 10)
    expect(empty).toEqual({ epoch: expect.any(String), offset: 0, messages: [], complete: true })
    await a.backplane.subscribe(topic)
    for (let i = 1; i <= 10; i++) a.backplane.history.publish(topic, `m${i}`, HISTORY)
    await until(() => a.on(topic).length === 10, 5000, 'ten messages')
    const epoch = empty.epoch
    expect(a.on(topic)[0]!.position).toEqual({ epoch, offset: 1 })

    expect(await a.backplane.history.read(topic, undefined, 10)).toEqual({
      epoch,
      offset: 10,
      messages: [],
      complete: true,
    })
    const after4 = await a.backplane.history.read(topic, { epoch, offset: 4 }, 100)
    expect(after4.complete).toBe(true)
    expect(after4.messages).toEqual(
      Array.from({ length: 6 }, (_, i) => ({ offset: i + 5, data: `m${i + 5}` })),
    )
    // At most `limit`, still complete (they start right after the position).
    const page = await a.backplane.history.read(topic, { epoch, offset: 0 }, 3)
    expect(page).toMatchObject({ offset: 10, complete: true })
    expect(page.messages.map((m) => m.offset)).toEqual([1, 2, 3])
    // Up to date.
    expect(await a.backplane.history.read(topic, { epoch, offset: 10 }, 10)).toEqual({
      epoch,
      offset: 10,
      messages: [],
      complete: true,
    })
    // Another epoch: everything kept, from the oldest, not complete.
    const other = await a.backplane.history.read(
      topic,
      { epoch: 'ffffffffffffffff', offset: 3 },
      100,
    )
    expect(other.complete).toBe(false)
    expect(other.messages.map((m) => m.offset)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
  })

  it('keeps at most `size` messages: a position older than the oldest kept reads incomplete, from the oldest', async () => {
    const a = await instance()
    const topic = newTopic('trimmed')
    await a.backplane.subscribe(topic)
    for (let i = 1; i <= 30; i++)
      a.backplane.history.publish(topic, `m${i}`, { size: 5, ttl: 60_000 })
    await until(() => a.on(topic).length === 30, 5000, 'thirty messages')
    const [, stream] = historyKeys('handshake:', topic)
    expect(await redis.command('XLEN', stream)).toBe(5)
    const epoch = a.on(topic)[0]!.position!.epoch
    const read = await a.backplane.history.read(topic, { epoch, offset: 10 }, 100)
    expect(read.complete).toBe(false)
    expect(read.messages.map((m) => m.offset)).toEqual([26, 27, 28, 29, 30])
    // Right at the edge: the oldest kept follows the position.
    const edge = await a.backplane.history.read(topic, { epoch, offset: 25 }, 100)
    expect(edge.complete).toBe(true)
    expect(edge.messages.map((m) => m.offset)).toEqual([26, 27, 28, 29, 30])
  })

  it('text stays text and bytes stay bytes, exactly, live and read back', async () => {
    const a = await instance()
    const b = await instance()
    const topic = newTopic('bytes')
    await Promise.all([a.backplane.subscribe(topic), b.backplane.subscribe(topic)])
    const all = Uint8Array.from({ length: 256 }, (_, i) => i)
    const view = new Uint8Array([9, 9, 0, 255, 128, 9]).subarray(2, 5)
    const sent: MessageData[] = ['', 'héllo 🌍', all, view, new Uint8Array(0), '\u0000:;']
    for (const data of sent) a.backplane.history.publish(topic, data, HISTORY)
    await until(() => b.on(topic).length === sent.length, 5000, 'the messages')
    const expected = sent.map((data) => (typeof data === 'string' ? data : new Uint8Array(data)))
    expect(b.on(topic).map((m) => m.data)).toEqual(expected)
    const epoch = b.on(topic)[0]!.position!.epoch
    const read = await b.backplane.history.read(topic, { epoch, offset: 0 }, 100)
    expect(read.messages.map((m) => m.data)).toEqual(expected)
    expect(read.messages.map((m) => typeof m.data)).toEqual(expected.map((data) => typeof data))
  })

  it('keys of one topic share a hash tag and expire `ttl` after the last publish; a lost history starts a new epoch', async () => {
    const a = await instance()
    const topic = newTopic('keys {with} braces')
    await a.backplane.subscribe(topic)
    a.backplane.history.publish(topic, 'one', { size: 10, ttl: 30_000 })
    await until(() => a.on(topic).length === 1, 5000, 'the message')
    const [meta, stream] = historyKeys('handshake:', topic)
    expect(stream).toBe(`handshake:{h:${topic}}`)
    expect(meta).toBe(`${stream}:m`)
    // What Redis Cluster hashes: from the first '{' to the next '}'.
    const tag = (key: string) => key.slice(key.indexOf('{') + 1, key.indexOf('}', key.indexOf('{')))
    expect(tag(meta)).toBe('h:keys {with')
    expect(tag(stream)).toBe(tag(meta))
    for (const key of [meta, stream]) {
      const ttl = Number(await redis.command('PTTL', key))
      expect(ttl).toBeGreaterThan(25_000)
      expect(ttl).toBeLessThanOrEqual(30_000)
    }
    const first = a.on(topic)[0]!.position!
    // The history is lost (expired, or Redis restarted empty): a new epoch, from offset 1.
    await redis.command('DEL', meta, stream)
    a.backplane.history.publish(topic, 'two', { size: 10, ttl: 30_000 })
    await until(() => a.on(topic).length === 2, 5000, 'the second message')
    const second = a.on(topic)[1]!.position!
    expect(second.offset).toBe(1)
    expect(second.epoch).not.toBe(first.epoch)
    const read = await a.backplane.history.read(topic, first, 10)
    expect(read).toEqual({
      epoch: second.epoch,
      offset: 1,
      messages: [{ offset: 1, data: 'two' }],
      complete: false,
    })
  })

  it('the script appends a message sent again at most once, and refuses one that skips ahead', async () => {
    const topic = newTopic('script')
    const [meta, stream] = historyKeys('handshake:', topic)
    const run = (sequence: number, starts: boolean, data: string) =>
      redis.command(
        'EVAL',
        PUBLISH_SCRIPT,
        '2',
        meta,
        stream,
        'aaaaaaaaaaaaaaaa',
        '10',
        '60000',
        `handshake:${topic}`,
        '0123456789abcdef',
        String(sequence),
        starts ? '1' : '0',
        't',
        'p0123456789abcdef1:',
        data,
        '1024',
        'run-1',
        '1',
        // The entry's tag: '0' keeps the ids plain here.
        '0',
      )
    // The first of a count must say so.
    expect(await run(5, false, 'x')).toBe(-1)
    expect(await run(5, true, 'five')).toEqual(['aaaaaaaaaaaaaaaa', '1'])
    expect(await run(5, true, 'five')).toBe(0)
    expect(await run(5, false, 'five')).toBe(0)
    expect(await run(7, false, 'seven')).toBe(-1)
    expect(await run(6, false, 'six')).toEqual(['aaaaaaaaaaaaaaaa', '2'])
    expect(await run(7, false, 'seven')).toEqual(['aaaaaaaaaaaaaaaa', '3'])
    expect(await redis.command('XRANGE', stream, '-', '+')).toEqual([
      ['1-0', ['t', 'five']],
      ['2-0', ['t', 'six']],
      ['3-0', ['t', 'seven']],
    ])
  })

  it('Redis lost its scripts (SCRIPT FLUSH) mid-traffic: loaded again, nothing lost, in order', async () => {
    const a = await instance()
    const b = await instance()
    const topic = newTopic('flush')
    await Promise.all([a.backplane.subscribe(topic), b.backplane.subscribe(topic)])
    let sent = 0
    const timer = setInterval(() => {
      for (let i = 0; i < 5; i++) a.backplane.history.publish(topic, String(sent++), HISTORY)
    }, 2)
    await until(() => b.on(topic).length > 50, 5000, 'traffic')
    await redis.command('SCRIPT', 'FLUSH')
    await sleep(100)
    await redis.command('SCRIPT', 'FLUSH')
    await sleep(100)
    clearInterval(timer)
    await until(() => b.on(topic).length === sent, 5000, `all ${sent}`)
    expect(b.on(topic).map((m) => m.data)).toEqual(
      Array.from({ length: sent }, (_, i) => String(i)),
    )
    expect(b.on(topic).map((m) => m.position!.offset)).toEqual(
      Array.from({ length: sent }, (_, i) => i + 1),
    )
    expect(a.on(topic).map((m) => m.data)).toEqual(b.on(topic).map((m) => m.data))
  })

  it('Redis stops answering: history publishes past the bound are dropped and counted, and nothing is held once it answers', async () => {
    const a = await instance({ maxPendingPublishes: 20 })
    const topic = newTopic('bound')
    await a.backplane.subscribe(topic)
    process.kill(redis.pid!, 'SIGSTOP')
    try {
      for (let i = 0; i < 100; i++) a.backplane.history.publish(topic, String(i), HISTORY, {})
      expect(a.backplane.pendingPublishes).toBeLessThanOrEqual(20)
      expect(a.backplane.droppedPublishes).toBeGreaterThanOrEqual(80)
    } finally {
      process.kill(redis.pid!, 'SIGCONT')
    }
    const accepted = 100 - a.backplane.droppedPublishes
    await until(() => a.on(topic).length === accepted, 5000, `the ${accepted} accepted`)
    await until(() => a.backplane.pendingPublishes === 0, 5000, 'nothing pending')
    expect(a.backplane.pendingBytes).toBe(0)
    // The accepted ones, in order, with their offsets following each other.
    const offsets = a.on(topic).map((m) => m.position!.offset)
    expect(offsets).toEqual(Array.from({ length: accepted }, (_, i) => i + 1))
  })
})

describe.each(CLIENT_KINDS)('history through connection faults, with %s', (kind) => {
  /** Enough to keep every message of a test. */
  const KEPT = { size: 100_000, ttl: 60_000 }
  const started: Started[] = []
  const instance = async () => {
    const one = await start(kind)
    started.push(one)
    return one
  }
  afterEach(async () => {
    await Promise.all(started.splice(0).map((one) => one.stop()))
  })

  /** Numbered publishes from `one` every 2 ms, five at a time. */
  function traffic(one: Started, topic: string, origin: object) {
    let sent = 0
    const timer = setInterval(() => {
      for (let i = 0; i < 5; i++) one.backplane.history.publish(topic, String(sent++), KEPT, origin)
    }, 2)
    return {
      get sent() {
        return sent
      },
      stop: () => clearInterval(timer),
    }
  }

  it('the connections killed (CLIENT KILL TYPE normal) mid-traffic: each message appended once, in order', async () => {
    const a = await instance()
    const b = await instance()
    const topic = newTopic('kill-normal')
    await Promise.all([a.backplane.subscribe(topic), b.backplane.subscribe(topic)])
    const flow = traffic(a, topic, {})
    await until(() => b.on(topic).length > 50, 5000, 'traffic')
    // The history connections and the apps' clients; the subscribers stay.
    expect(Number(await redis.command('CLIENT', 'KILL', 'TYPE', 'normal'))).toBeGreaterThanOrEqual(
      3,
    )
    await until(() => a.ups.length > 0, 10_000, "A's restore")
    await sleep(100)
    flow.stop()
    const sent = flow.sent
    await until(() => b.on(topic).length >= sent, 10_000, `all ${sent} on B`)
    await sleep(100)
    // Nothing lost, nothing twice, in the order published, offsets one after another.
    for (const one of [a, b]) {
      expect(one.on(topic).map((m) => m.data)).toEqual(
        Array.from({ length: sent }, (_, i) => String(i)),
      )
      expect(one.on(topic).map((m) => m.position!.offset)).toEqual(
        Array.from({ length: sent }, (_, i) => i + 1),
      )
    }
    const [, stream] = historyKeys('handshake:', topic)
    expect(await redis.command('XLEN', stream)).toBe(sent)
    expect(a.errors.length).toBeGreaterThan(0)
  })

  it('the subscriber connections killed (CLIENT KILL TYPE pubsub) mid-traffic: what they missed is in the stream, and the own publishes read back carry their origin', async () => {
    const a = await instance()
    const b = await instance()
    const topic = newTopic('kill-pubsub')
    await Promise.all([a.backplane.subscribe(topic), b.backplane.subscribe(topic)])
    const origin = { connection: 'on A' }
    const flow = traffic(a, topic, origin)
    await until(() => b.on(topic).length > 50, 5000, 'traffic')
    expect(await redis.command('CLIENT', 'KILL', 'TYPE', 'pubsub')).toBe(2)
    await until(() => a.ups.length > 0 && b.ups.length > 0, 10_000, 'the restores')
    await sleep(50)
    flow.stop()
    const sent = flow.sent
    await until(() => a.backplane.pendingPublishes === 0, 5000, 'the answers')
    await sleep(100)
    for (const one of [a, b]) {
      const live = one.on(topic)
      const epoch = live[0]!.position!.epoch
      // What the core does after up: read after the last position it delivered, until the end.
      const have = new Map(live.map((m) => [m.position!.offset, m]))
      let last = 0
      while (have.has(last + 1)) last++
      const read = await one.backplane.history.read(topic, { epoch, offset: last }, 1000)
      expect(read.complete).toBe(true)
      expect(read.offset).toBe(sent)
      let missed = 0
      for (const message of read.messages) {
        expect(message.data).toBe(String(message.offset - 1))
        if (have.has(message.offset)) continue
        // A's own messages that never came back carry their origin; B's read carries none.
        expect(message.origin).toBe(one === a ? origin : undefined)
        missed++
      }
      console.log(
        `${kind}: ${one === a ? 'A' : 'B'} missed ${missed} of ${sent} live, all read back`,
      )
      const all = new Map(have)
      for (const message of read.messages) all.set(message.offset, { ...message } as never)
      expect([...all.keys()].sort((x, y) => x - y)).toEqual(
        Array.from({ length: sent }, (_, i) => i + 1),
      )
    }
  })
})

describe.each(CLIENT_KINDS)('history across a Redis restart, with %s', (kind) => {
  let own: RedisServer | undefined
  let one: Started | undefined
  afterEach(async () => {
    await one?.stop()
    await own?.stop()
    one = undefined
    own = undefined
  })

  /** A backplane on its own redis-server with that persistence. */
  async function startOn(persistence: 'aof' | 'snapshot') {
    own = await startRedis({ persistence })
    const app = await appClient(kind, own.url)
    const backplane = redisBackplane({ client: app.client })
    const received: Received[] = []
    const ups: number[] = []
    const errors: unknown[] = []
    await backplane.start({
      message: (topic, data, position, origin) => received.push({ topic, data, position, origin }),
      down: (error) => errors.push(error),
      up: () => ups.push(Date.now()),
      topics: () => [],
      presence: () => {},
      members: () => [],
    })
    one = {
      backplane,
      app,
      received,
      errors,
      ups,
      on: (topic) => received.filter((message) => message.topic === topic),
      async stop() {
        await backplane.close()
        await app.close()
      },
    }
    return { redis: own, one }
  }

  it('a snapshot reloaded after a SIGKILL is older than what was given: a new epoch, never an offset given twice', async () => {
    const { redis: server, one: a } = await startOn('snapshot')
    const topic = newTopic('snapshot')
    await a.backplane.subscribe(topic)
    for (let i = 1; i <= 10; i++) a.backplane.history.publish(topic, `m${i}`, HISTORY)
    await until(() => a.on(topic).length === 10, 5000, 'ten')
    expect(await server.command('SAVE')).toBe('OK')
    for (let i = 11; i <= 20; i++) a.backplane.history.publish(topic, `m${i}`, HISTORY)
    await until(() => a.on(topic).length === 20, 5000, 'twenty')
    const before = a.on(topic)[19]!.position!
    await server.kill()
    await server.restart()
    const [meta] = historyKeys('handshake:', topic)
    // The reloaded snapshot holds offset 10 of the same epoch.
    expect(await server.command('HGET', meta, 'o')).toBe('10')
    await until(() => a.ups.length > 0, 10_000, 'the restore')
    a.backplane.history.publish(topic, 'after', HISTORY)
    await until(() => a.on(topic).length === 21, 5000, 'the message after')
    const after = a.on(topic)[20]!.position!
    expect(after.epoch).not.toBe(before.epoch)
    expect(after.offset).toBe(1)
    const read = await a.backplane.history.read(topic, before, 100)
    expect(read.complete).toBe(false)
  })

  it('a snapshot taken after a read made the epoch, before its first publish: a new epoch after the restart, never an offset given twice', async () => {
    const { redis: server, one: a } = await startOn('snapshot')
    const topic = newTopic('read-snapshot')
    await a.backplane.subscribe(topic)
    // A first subscriber reads the topic's position: the read makes its epoch, at offset 0.
    const made = await a.backplane.history.read(topic, undefined, 0)
    expect(made.offset).toBe(0)
    expect(await server.command('SAVE')).toBe('OK')
    for (let i = 1; i <= 10; i++) a.backplane.history.publish(topic, `m${i}`, HISTORY)
    await until(() => a.on(topic).length === 10, 5000, 'ten')
    const before = a.on(topic)[9]!.position!
    expect(before).toEqual({ epoch: made.epoch, offset: 10 })
    await server.kill()
    await server.restart()
    const [meta] = historyKeys('handshake:', topic)
    // The reloaded snapshot holds offset 0 of the same epoch.
    expect(await server.command('HGET', meta, 'o')).toBe('0')
    await until(() => a.ups.length > 0, 10_000, 'the restore')
    a.backplane.history.publish(topic, 'after', HISTORY)
    await until(() => a.on(topic).length === 11, 5000, 'the message after')
    const after = a.on(topic)[10]!.position!
    // Offset 1 of the same epoch would be a second message at a position subscribers hold.
    expect(after.epoch).not.toBe(before.epoch)
    expect(after.offset).toBe(1)
  })

  it('with appendonly yes and appendfsync always: the same epoch after a SIGKILL, and nothing lost or twice', async () => {
    const { redis: server, one: a } = await startOn('aof')
    const topic = newTopic('aof')
    await a.backplane.subscribe(topic)
    let sent = 0
    const timer = setInterval(() => {
      for (let i = 0; i < 5; i++)
        a.backplane.history.publish(topic, String(sent++), { size: 100_000, ttl: 60_000 })
    }, 2)
    try {
      await until(() => a.on(topic).length > 50, 5000, 'traffic')
      await server.kill()
      await sleep(300)
      await server.restart()
      await until(() => a.ups.length > 0, 15_000, 'the restore')
      await sleep(100)
    } finally {
      clearInterval(timer)
    }
    await until(() => a.backplane.pendingPublishes === 0, 10_000, 'the answers')
    const epoch = a.on(topic)[0]!.position!.epoch
    const read = await a.backplane.history.read(topic, { epoch, offset: 0 }, 100_000)
    expect(read.epoch).toBe(epoch)
    expect(read.complete).toBe(true)
    // Every accepted message once, in the order published (none was dropped: the bound is far).
    expect(a.backplane.droppedPublishes).toBe(0)
    expect(read.messages.map((m) => m.data)).toEqual(
      Array.from({ length: sent }, (_, i) => String(i)),
    )
    expect(read.offset).toBe(sent)
    console.log(
      `${kind}: appendfsync always, SIGKILL: ${sent} published, ${read.messages.length} in the stream`,
    )
  })
})
