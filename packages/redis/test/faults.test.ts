/**
 * The backplane's faults, each against a real redis-server that the test starts, kills or
 * starves, with each client: nothing crashes, local delivery never stops, the error is
 * reported once, the backplane restores the subscriptions itself within the stated bound and
 * the Topics fires 'restore', and no instance's memory grows without bound.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { EventController } from '@handshake/core'
import { connect } from '@handshake/core/testing'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
// The suite's redis-server, imported from its source: @handshake/conformance depends on this package.
import { type RedisServer, startRedis } from '../../conformance/src/redis-server.js'
import {
  appOf,
  CLIENT_KINDS,
  type Instance,
  joinRoom,
  type Member,
  sleep,
  startInstance,
  until,
} from './fixtures.js'

/**
 * The bound this package states: once Redis accepts connections again, the subscriptions are
 * back within `maxReconnectDelay` (1 s by default) plus a few round trips. Asserted with
 * 500 ms of room for a busy 2-core machine.
 */
const SUBSCRIPTIONS_RESTORED_MS = 1000 + 500
/**
 * The 'restore' event also waits for a round trip on the app's own client, which reconnects
 * on its own schedule: ioredis waits up to 5 s (plus 200 ms of jitter) between attempts by
 * default, node-redis up to 2 s (plus 200 ms).
 */
const RESTORE_EVENT_MS = { ioredis: 5200 + 500, 'node-redis': 2200 + 500 } as const

// V8's gc(), to measure memory that is held, not garbage not yet collected.
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void
const heapUsed = () => {
  gc()
  return process.memoryUsage().heapUsed
}

const MiB = 1024 * 1024
let topicCounter = 0
const newTopic = (label: string) => `${label}-${process.pid}-${++topicCounter}`

/** How many subscribers Redis counts on a channel; -1 while Redis is down. */
async function numsub(redis: RedisServer, channel: string): Promise<number> {
  try {
    const answer = await redis.command('PUBSUB', 'NUMSUB', channel)
    return Array.isArray(answer) && typeof answer[1] === 'number' ? answer[1] : -1
  } catch {
    return -1
  }
}

/** Publishes numbered messages from A every few ms; records any throw. */
function traffic(instance: Instance, topic: string) {
  let sent = 0
  const thrown: unknown[] = []
  const timer = setInterval(() => {
    try {
      instance.topics.publish(topic, String(sent))
      sent++
    } catch (err) {
      thrown.push(err)
    }
  }, 5)
  return {
    get sent() {
      return sent
    },
    thrown,
    stop: () => clearInterval(timer),
  }
}

/** Numbered messages arrived in order, each at most once. */
function expectInOrderOnce(received: unknown[]) {
  const numbers = received.map((message) => Number(String(message).split(' ')[0]))
  for (let i = 1; i < numbers.length; i++) {
    expect(numbers[i], `message ${i} after ${numbers[i - 1]}`).toBeGreaterThan(numbers[i - 1]!)
  }
}

describe.each(CLIENT_KINDS)('faults, with %s', (kind) => {
  let redis: RedisServer
  let a: Instance
  let b: Instance
  beforeEach(async () => {
    redis = await startRedis()
    a = await startInstance(kind, redis.url)
    b = await startInstance(kind, redis.url)
  })
  afterEach(async () => {
    await Promise.all([a?.stop(), b?.stop()])
    await redis?.stop()
  })

  /**
   * The common part of an outage: traffic from A, the fault, then the checks once restored.
   * `fault` returns when the engine is back (the moment the bound counts from).
   */
  async function outage(fault: (topic: string, sent: () => number) => Promise<number>) {
    const topic = newTopic('outage')
    const channel = `handshake:${topic}`
    const onA: Member = await joinRoom(a, topic)
    const onB: Member = await joinRoom(b, topic)
    const flow = traffic(a, topic)
    await onB.receive(10)
    const restoredA = a.nextRestore()
    const restoredB = b.nextRestore()

    const backAt = await fault(topic, () => flow.sent)
    await until(async () => (await numsub(redis, channel)) === 2, 10_000, 'both subscriptions')
    const subscribedMs = Date.now() - backAt
    const restoreMs = Math.max(await restoredA, await restoredB) - backAt

    // Traffic from A reaches B again.
    const mark = flow.sent
    await until(
      () => onB.received.some((message) => Number(message) > mark),
      5000,
      'traffic after the restore',
    )
    flow.stop()
    const sent = flow.sent

    // No throw into publish, and local delivery never stopped: A's member got every message.
    expect(flow.thrown).toEqual([])
    await until(() => onA.received.length === sent, 2000, 'local delivery')
    expect(onA.received).toEqual(Array.from({ length: sent }, (_, i) => String(i)))
    // Across instances: in order, at most once.
    expectInOrderOnce(onB.received)
    expect(new Set(onB.received).size).toBe(onB.received.length)
    // Reported once per instance, restored once, within the bound.
    expect(a.errors).toHaveLength(1)
    expect(b.errors).toHaveLength(1)
    expect(a.restores).toHaveLength(1)
    expect(b.restores).toHaveLength(1)
    expect(subscribedMs).toBeLessThanOrEqual(SUBSCRIPTIONS_RESTORED_MS)
    expect(restoreMs).toBeLessThanOrEqual(RESTORE_EVENT_MS[kind])
    expect(a.backplane.healthy && b.backplane.healthy).toBe(true)
    return {
      subscribedMs,
      restoreMs,
      sent,
      acrossInstances: onB.received.length,
      received: onB.received.map(Number),
    }
  }

  it('Redis SIGKILLed mid-traffic and restarted on the same port: reported once, restored by us', async () => {
    // The messages A published while Redis was down: [from, to).
    let from = 0
    let to = 0
    const { received, ...measured } = await outage(async (_topic, sent) => {
      from = sent()
      await redis.kill()
      await until(() => a.errors.length > 0 && b.errors.length > 0, 5000, 'the reports')
      // An outage of a second, with traffic going on.
      await sleep(1000)
      to = sent()
      await redis.restart()
      return Date.now()
    })
    // What the README reports: A's client queued them, and sent them once it reconnected;
    // those that came after B's subscription was back reached B, late.
    const late = received.filter((n) => n >= from && n < to).length
    console.log(
      `${kind}: Redis restarted: ${JSON.stringify(measured)}; published during the outage: ${to - from}, reached the other instance late: ${late}`,
    )
  })

  it('only the subscriber connections killed (CLIENT KILL TYPE pubsub): the same', async () => {
    const { received: _received, ...measured } = await outage(async () => {
      const killed = await redis.command('CLIENT', 'KILL', 'TYPE', 'pubsub')
      expect(killed).toBe(2)
      return Date.now()
    })
    console.log(`${kind}: subscribers killed: ${JSON.stringify(measured)}`)
  })

  it('a topic left during an outage keeps no count of what it heard: no false gap when it is held again', async () => {
    const topic = newTopic('left')
    const first = await joinRoom(b, topic)
    a.topics.publish(topic, 'before')
    await first.receive(1)
    const restoredA = a.nextRestore()
    const restoredB = b.nextRestore()
    await redis.kill()
    await until(() => b.errors.length > 0, 5000, "B's report")
    // The last connection leaves while the subscriber connection is down.
    first.peer.close(1000)
    await first.peer.closed
    await until(() => b.topics.subscribers(topic) === 0, 2000, 'the leave')
    await redis.restart()
    await Promise.all([restoredA, restoredB])
    // Published while nobody on B holds the topic: B is not subscribed, and misses nothing.
    for (let i = 0; i < 10; i++) a.topics.publish(topic, `unheard ${i}`)
    await a.app.client.ping()
    const again = await joinRoom(b, topic)
    a.topics.publish(topic, 'after')
    expect(await again.receive(1)).toEqual(['after'])
    expect(b.backplane.gaps).toBe(0)
    expect(b.backplane.missedMessages).toBe(0)
  })

  it('after an outage, the topics are subscribed again in batches, not one SUBSCRIBE each', async () => {
    // 2,000 topics on A: 16 connections of 125 topics each.
    const label = newTopic('batch')
    const many: EventController = {
      async open(conn, c) {
        const first = Number(c.req.query('first'))
        for (let i = first; i < first + 125; i++) await conn.subscribe(`${label}-${i}`)
        await conn.send('subscribed')
      },
      message() {},
    }
    const app = appOf(many)
    for (let first = 0; first < 2000; first += 125) {
      const peer = await connect(app, `/?first=${first}`, { hub: a.hub })
      expect((await peer.read()).data).toBe('subscribed')
    }
    const channels = async () => {
      const answer = await redis.command('PUBSUB', 'CHANNELS', `handshake:${label}-*`)
      return Array.isArray(answer) ? answer.length : -1
    }
    expect(await channels()).toBe(2000)
    const restored = a.nextRestore()
    await redis.command('CONFIG', 'RESETSTAT')
    // (B holds no topic: Redis counts its connection as a normal one.)
    expect(await redis.command('CLIENT', 'KILL', 'TYPE', 'pubsub')).toBe(1)
    await restored
    expect(await channels()).toBe(2000)
    const stats = String(await redis.command('INFO', 'commandstats'))
    const subscribes = Number(/cmdstat_subscribe:calls=(\d+)/.exec(stats)?.[1] ?? 0)
    console.log(`${kind}: 2,000 topics restored with ${subscribes} SUBSCRIBE commands`)
    // A's two batches of 1,000: a few, however many topics.
    expect(subscribes).toBeGreaterThan(0)
    expect(subscribes).toBeLessThanOrEqual(4)
    // And they deliver.
    const onB = await joinRoom(b, `${label}-1999`)
    a.topics.publish(`${label}-1999`, 'after the batches')
    expect(await onB.receive(1)).toEqual(['after the batches'])
  })

  it('publishes while Redis is down are bounded: dropped and counted, not queued', async () => {
    const small = await startInstance(kind, redis.url, {
      maxPendingPublishes: 1000,
      maxPendingBytes: 256 * 1024,
    })
    try {
      const topic = newTopic('bounded')
      await redis.kill()
      await until(() => small.errors.length > 0, 5000, 'the report')
      const before = heapUsed()
      // 64 MiB of publishes during the outage.
      const payload = 'x'.repeat(1024)
      let peakPending = 0
      let peakBytes = 0
      for (let i = 0; i < 64 * 1024; i++) {
        small.topics.publish(topic, `${i} ${payload}`)
        peakPending = Math.max(peakPending, small.backplane.pendingPublishes)
        peakBytes = Math.max(peakBytes, small.backplane.pendingBytes)
      }
      const growth = heapUsed() - before
      console.log(
        `${kind}: 64 MiB published during an outage: heap grew ${(growth / MiB).toFixed(1)} MiB`,
      )
      // What is held is what the bound allows (plus the client's bookkeeping), not 64 MiB.
      expect(growth).toBeLessThan(16 * MiB)
      expect(peakPending).toBeLessThanOrEqual(1000)
      expect(peakBytes).toBeLessThanOrEqual(256 * 1024)
      expect(small.backplane.droppedPublishes).toBeGreaterThanOrEqual(64 * 1024 - 1000)
      expect(small.errors).toHaveLength(1)
      await redis.restart()
      await small.nextRestore(RESTORE_EVENT_MS[kind] + 2000)
      await until(() => small.backplane.pendingPublishes === 0, 5000, 'the pending publishes')
      expect(small.errors).toHaveLength(1)
    } finally {
      await small.stop()
    }
  })

  it('Redis slow (CLIENT PAUSE): unanswered publishes stay under the bound, then flow again', async () => {
    const small = await startInstance(kind, redis.url, {
      maxPendingPublishes: 1000,
      maxPendingBytes: 256 * 1024,
    })
    try {
      const topic = newTopic('slow')
      const onB = await joinRoom(b, topic)
      const restored = small.nextRestore()
      await redis.command('CLIENT', 'PAUSE', '1500', 'ALL')
      const payload = 'y'.repeat(512)
      let sent = 0
      let peakPending = 0
      const started = Date.now()
      while (Date.now() - started < 1000) {
        for (let i = 0; i < 100; i++) small.topics.publish(topic, `${sent++} ${payload}`)
        peakPending = Math.max(peakPending, small.backplane.pendingPublishes)
        await sleep(1)
      }
      expect(peakPending).toBeLessThanOrEqual(1000)
      expect(small.backplane.droppedPublishes).toBeGreaterThan(0)
      expect(small.errors).toHaveLength(1)
      await restored
      // Once Redis answers again, publishes flow: in order, at most once.
      small.topics.publish(topic, `${sent++} after`)
      await until(() => onB.received.some((m) => String(m).endsWith('after')), 5000, 'the last')
      expectInOrderOnce(onB.received)
      expect(onB.received.length).toBe(sent - small.backplane.droppedPublishes)
      expect(small.errors).toHaveLength(1)
    } finally {
      await small.stop()
    }
  })

  it("the pending budget is fair per topic: a noisy room cannot drop another room's messages", async () => {
    const small = await startInstance(kind, redis.url, { maxPendingPublishes: 1000 })
    try {
      const noisy = newTopic('noisy')
      const quiet = newTopic('quiet')
      const noisyOnB = await joinRoom(b, noisy)
      const quietOnB = await joinRoom(b, quiet)
      const flooder = await joinRoom(small, noisy)
      const talker = await joinRoom(small, quiet)
      // Redis holds every command for a second: the publishes pile up unanswered.
      await redis.command('CLIENT', 'PAUSE', '1000', 'ALL')
      for (let i = 0; i < 5000; i++) flooder.peer.send(`${i}`)
      await until(() => small.backplane.droppedPublishes > 0, 5000, 'the flood to be bounded')
      for (let i = 0; i < 5; i++) talker.peer.send(`quiet ${i}`)
      // Every quiet message arrives once Redis answers again; the flood was cut.
      expect(await quietOnB.receive(5, 10_000)).toEqual(
        Array.from({ length: 5 }, (_, i) => `quiet ${i}`),
      )
      await until(() => small.backplane.pendingPublishes === 0, 10_000, 'the pending publishes')
      console.log(
        `${kind}: a noisy room of 5,000 publishes, budget 1,000: ${noisyOnB.received.length} crossed, ${small.backplane.droppedPublishes} dropped, the quiet room's 5 all crossed`,
      )
      expect(noisyOnB.received.length).toBeLessThanOrEqual(500)
      expect(small.backplane.droppedPublishes).toBe(5000 - noisyOnB.received.length)
      expectInOrderOnce(noisyOnB.received)
    } finally {
      await small.stop()
    }
  })

  it('the pending budget is fair per connection: one spraying many topics cannot drop others', async () => {
    const small = await startInstance(kind, redis.url, { maxPendingPublishes: 1000 })
    try {
      const quiet = newTopic('quiet')
      const quietOnB = await joinRoom(b, quiet)
      const talker = await joinRoom(small, quiet)
      // One connection publishes each message to a topic of its own, that nobody holds.
      const sprayed = newTopic('sprayed')
      const spray: EventController = {
        message(conn, msg) {
          conn.publish(`${sprayed}-${msg.data}`, msg.data)
        },
      }
      const sprayer = await connect(appOf(spray), '/', { hub: small.hub })
      await redis.command('CLIENT', 'PAUSE', '1000', 'ALL')
      for (let i = 0; i < 5000; i++) sprayer.send(`${i}`)
      await until(() => small.backplane.droppedPublishes > 0, 5000, 'the spray to be bounded')
      for (let i = 0; i < 5; i++) talker.peer.send(`quiet ${i}`)
      expect(await quietOnB.receive(5, 10_000)).toEqual(
        Array.from({ length: 5 }, (_, i) => `quiet ${i}`),
      )
      await until(() => small.backplane.pendingPublishes === 0, 10_000, 'the pending publishes')
      // The sprayer held at most half the budget.
      expect(small.backplane.droppedPublishes).toBeGreaterThanOrEqual(4500)
    } finally {
      await small.stop()
    }
  })

  it("the pending budget is fair per connection within a room: a noisy client cannot drop its roommates' messages", async () => {
    const small = await startInstance(kind, redis.url, { maxPendingPublishes: 1000 })
    try {
      const shared = newTopic('shared')
      const onB = await joinRoom(b, shared)
      const flooder = await joinRoom(small, shared)
      const talker = await joinRoom(small, shared)
      await redis.command('CLIENT', 'PAUSE', '1000', 'ALL')
      for (let i = 0; i < 5000; i++) flooder.peer.send(`${i}`)
      await until(() => small.backplane.droppedPublishes > 0, 5000, 'the flood to be bounded')
      for (let i = 0; i < 5; i++) talker.peer.send(`quiet ${i}`)
      await until(() => small.backplane.pendingPublishes === 0, 10_000, 'the pending publishes')
      await sleep(200)
      // The flooder, not its roommate, is the one past its share.
      expect(onB.received.filter((m) => String(m).startsWith('quiet'))).toEqual(
        Array.from({ length: 5 }, (_, i) => `quiet ${i}`),
      )
      expectInOrderOnce(onB.received.filter((m) => !String(m).startsWith('quiet')))
    } finally {
      await small.stop()
    }
  })

  it('a connection past its share is no outage: nothing reported, no restore, however often it floods', async () => {
    const small = await startInstance(kind, redis.url, { maxPendingPublishes: 1000 })
    try {
      const shared = newTopic('bursts')
      const onB = await joinRoom(b, shared)
      const flooder = await joinRoom(small, shared)
      // Redis is healthy: each burst outruns its replies, and the flooder is past its share.
      for (let burst = 0; burst < 5; burst++) {
        for (let i = 0; i < 3000; i++) flooder.peer.send(`${burst * 3000 + i}`)
        await sleep(300)
      }
      await until(() => small.backplane.pendingPublishes === 0, 10_000, 'the pending publishes')
      await sleep(500)
      expect(small.backplane.droppedPublishes).toBeGreaterThan(0)
      // Otherwise a client would fire the app's onError and its 'restore' listeners at will.
      expect(small.errors).toEqual([])
      expect(small.restores).toEqual([])
      expect(small.backplane.healthy).toBe(true)
      expect(onB.received.length).toBe(15_000 - small.backplane.droppedPublishes)
    } finally {
      await small.stop()
    }
  })

  it("a refused first message of a publisher's new count makes no false gap", async () => {
    const small = await startInstance(kind, redis.url, { maxPendingPublishes: 1 })
    try {
      const topic = newTopic('recount')
      const onB = await joinRoom(b, topic)
      small.topics.publish(topic, 'a')
      await onB.receive(1)
      const before = b.backplane.missedMessages
      await redis.command('CLIENT', 'PAUSE', '1000', 'ALL')
      const restored = small.nextRestore()
      small.topics.publish(`${topic}-held`, 'fills the bound')
      // 65,536 other topics: the publisher's counts start over (each gets a new one above every
      // number used before), and the first message of the topic's new count is refused.
      for (let i = 0; i < 65_536; i++) small.topics.publish(`${topic}-${i}`, 'x')
      small.topics.publish(topic, 'b')
      await restored
      small.topics.publish(topic, 'c')
      expect(await onB.receive(2)).toEqual(['a', 'c'])
      // One message did not arrive ('b'), not the 65,538 numbers used meanwhile.
      expect(b.backplane.missedMessages - before).toBeLessThanOrEqual(1)
    } finally {
      await small.stop()
    }
  })

  it("a flooded subscriber past Redis's pub/sub output limit is cut by Redis, then restored", async () => {
    await redis.command('CONFIG', 'SET', 'client-output-buffer-limit', 'pubsub 64kb 32kb 1')
    const topic = newTopic('flood')
    const onB = await joinRoom(b, topic)
    const restored = b.nextRestore()
    const before = heapUsed()
    // A flood of 1.5 s, which ends while B is busy: one outage.
    const flooder = spawnFlooder(redis.port, `handshake:${topic}`, 1500, 8192)
    const flooded = once(flooder, 'exit')
    let sent = ''
    flooder.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      sent += chunk
    })
    await until(() => onB.received.length > 100, 5000, 'the flood')
    // B stops reading for 2.5 s, as a busy process would: the flood piles up in Redis.
    const blockedUntil = Date.now() + 2500
    while (Date.now() < blockedUntil) {
      // Busy on purpose.
    }
    await restored
    const [code] = await flooded
    expect(code).toBe(0)
    console.log(`${kind}: flood of 8 KiB messages: ${sent.trim()}`)
    expect(redis.output()).toMatch(/closed .*output buffer limits/)
    expect(b.errors, String(b.errors)).toHaveLength(1)
    // B's memory is what the kernel and the client held for the socket, not the flood.
    const growth = heapUsed() - before
    console.log(`${kind}: flooded subscriber: heap grew ${(growth / MiB).toFixed(1)} MiB`)
    expect(growth).toBeLessThan(32 * MiB)
    expectInOrderOnce(onB.received)
    // The restored subscription delivers again.
    a.topics.publish(topic, '999999999 after the flood')
    await until(
      () => onB.received.at(-1) === '999999999 after the flood',
      5000,
      'a message after the restore',
    )
  })
})

const here = dirname(fileURLToPath(import.meta.url))

/** Starts the flooder (`flood.mjs`) in its own Node process. */
function spawnFlooder(port: number, channel: string, ms: number, size: number): ChildProcess {
  return spawn(
    process.execPath,
    [join(here, 'flood.mjs'), String(port), channel, String(ms), String(size)],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
}
