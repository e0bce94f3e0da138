/**
 * The backplane's presence on Redis, against a real redis-server, with each client and a
 * hand-made sink that keeps a view as the core does (read, then diffs; read again after `up()`):
 * diffs between instances, order, the bound on a vanished instance, and the faults (Redis
 * killed and restarted, the subscriber connection killed, scripts flushed, an instance reaped
 * while alive).
 */
import net from 'node:net'
import type { PresenceMember, PresenceMeta } from '@handshake/core'
import type { BackplaneSink } from '@handshake/core/adapter'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
// The suite's redis-server, imported from its source: @handshake/conformance depends on this package.
import { type RedisServer, startRedis } from '../../conformance/src/redis-server.js'
import { type RedisBackplane, type RedisBackplaneOptions, redisBackplane } from '../src/index.js'
import { PRESENCE_SCRIPT, presenceIndex } from '../src/presence.js'
import {
  type AppClient,
  appClient,
  CLIENT_KINDS,
  type ClientKind,
  sleep,
  until,
} from './fixtures.js'

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
})

/** The heartbeat the tests use: the bound on a vanished instance is 4 of them. */
const INTERVAL = 200
const BOUND = 4 * INTERVAL
/**
 * Room on top of a bound for a busy 2-core machine: a timer may fire late, and the diff takes
 * a round trip to Redis and another to the subscriber.
 */
const SLACK = 400

let topicCounter = 0
const newTopic = (label: string) => `${label}-${process.pid}-${++topicCounter}`

/** One diff a sink was given. */
interface Diff {
  readonly topic: string
  readonly joins: readonly PresenceMember[]
  readonly leaves: readonly PresenceMember[]
  readonly at: number
}

/**
 * A view of a topic's members kept as the core keeps it: a read, with the diffs that came while
 * it was on its way replayed over it, then every diff; read again after each `up()`.
 */
class View {
  readonly members = new Map<string, PresenceMeta>()
  /** The ids listed after each change made while no read was on its way, and after each read. */
  readonly settled: string[][] = []
  #changes: Diff[] | undefined
  #generation = 0

  constructor(
    readonly topic: string,
    readonly read: () => Promise<PresenceMember[]>,
    /** This instance's own members, which the core lists as they are. */
    readonly local: () => PresenceMember[],
  ) {}

  apply(diff: Diff): void {
    this.#changes?.push(diff)
    for (const member of diff.leaves) this.members.delete(member.id)
    for (const member of diff.joins) this.members.set(member.id, member.meta)
    if (!this.#changes) this.settled.push(this.ids())
  }

  async load(): Promise<void> {
    const generation = ++this.#generation
    this.#changes = []
    const read = await this.read()
    if (generation !== this.#generation) return
    // Nobody twice in what a read returns.
    expect(new Set(read.map((member) => member.id)).size).toBe(read.length)
    this.members.clear()
    for (const member of read) this.members.set(member.id, member.meta)
    for (const diff of this.#changes) {
      for (const member of diff.leaves) this.members.delete(member.id)
      for (const member of diff.joins) this.members.set(member.id, member.meta)
    }
    this.#changes = undefined
    this.settled.push(this.ids())
  }

  /** The members listed: the view's, and this instance's own as they are. */
  all(): Map<string, PresenceMeta> {
    const all = new Map(this.members)
    for (const member of this.local()) all.set(member.id, member.meta)
    return all
  }

  ids(): string[] {
    return [...this.all().keys()].sort()
  }
}

/** A backplane started with a sink that keeps its members and views. */
interface Started {
  readonly backplane: RedisBackplane
  readonly app: AppClient
  readonly diffs: Diff[]
  readonly errors: unknown[]
  readonly ups: number[]
  /** This instance's members, per topic (what `sink.members()` answers). */
  readonly local: Map<string, Map<string, PresenceMember>>
  /** What Redis held for this instance's hash when each `up()` came. */
  readonly heldAtUp: Promise<unknown>[]
  join(topic: string, id: string, meta?: PresenceMeta): void
  leave(topic: string, id: string): void
  /** Subscribes to the topic and keeps a view of it. */
  watch(topic: string): Promise<View>
  stop(): Promise<void>
}

async function start(
  kind: ClientKind,
  options: Omit<RedisBackplaneOptions, 'client'> = {},
  url = redis.url,
): Promise<Started> {
  const app = await appClient(kind, url)
  const backplane = redisBackplane({ client: app.client, presenceInterval: INTERVAL, ...options })
  const diffs: Diff[] = []
  const errors: unknown[] = []
  const ups: number[] = []
  const heldAtUp: Promise<unknown>[] = []
  const local = new Map<string, Map<string, PresenceMember>>()
  const views = new Map<string, View>()
  const held = new Set<string>()
  const sink: BackplaneSink = {
    message: () => {},
    down: (error) => errors.push(error),
    up: () => {
      ups.push(Date.now())
      for (const topic of local.keys()) {
        heldAtUp.push(
          redis.command('HGETALL', `${presenceIndex('handshake:', topic)}:${backplane.instanceId}`),
        )
      }
      for (const view of views.values()) void view.load()
    },
    topics: () => [...held],
    presence: (topic, joins, leaves) => {
      const diff = { topic, joins, leaves, at: Date.now() }
      diffs.push(diff)
      views.get(topic)?.apply(diff)
    },
    members: (topic) => [...(local.get(topic)?.values() ?? [])],
  }
  await backplane.start(sink)
  const membersOf = (topic: string) => {
    let members = local.get(topic)
    if (!members) {
      members = new Map()
      local.set(topic, members)
    }
    return members
  }
  return {
    backplane,
    app,
    diffs,
    errors,
    ups,
    local,
    heldAtUp,
    join(topic, id, meta = { name: id }) {
      const member = { id, meta }
      membersOf(topic).set(id, member)
      backplane.presence.join(topic, member)
    },
    leave(topic, id) {
      membersOf(topic).delete(id)
      backplane.presence.leave(topic, id)
    },
    async watch(topic) {
      held.add(topic)
      await backplane.subscribe(topic)
      const view = new View(
        topic,
        () => backplane.presence.read(topic),
        () => [...(local.get(topic)?.values() ?? [])],
      )
      views.set(topic, view)
      await view.load()
      return view
    },
    async stop() {
      await backplane.close()
      await app.close()
    },
  }
}

/** A TCP proxy to Redis: `vanish()` resets every connection and refuses new ones for good. */
async function proxyTo(port: number) {
  const sockets = new Set<net.Socket>()
  let gone = false
  const server = net.createServer((client) => {
    if (gone) {
      client.resetAndDestroy()
      return
    }
    const upstream = net.connect(port, '127.0.0.1')
    sockets.add(client).add(upstream)
    client.pipe(upstream).pipe(client)
    const end = () => {
      client.destroy()
      upstream.destroy()
    }
    client.on('error', end).on('close', end)
    upstream.on('error', end).on('close', end)
  })
  server.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  const address = server.address() as net.AddressInfo
  return {
    url: `redis://127.0.0.1:${address.port}`,
    /** The instance behind it vanishes: its connections reset, and it never reaches Redis again. */
    vanish() {
      gone = true
      for (const socket of sockets) socket.resetAndDestroy()
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

/**
 * A TCP proxy to Redis that can hold back what Redis sends on subscriber connections (those
 * whose client sent a SUBSCRIBE): a slow subscriber connection, while commands go on.
 */
async function laggingProxyTo(port: number) {
  const subscribers = new Set<{ held: Buffer[] | undefined; client: net.Socket }>()
  let holding = false
  const server = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1')
    const link = { held: undefined as Buffer[] | undefined, client }
    let subscriber = false
    client.on('data', (chunk: Buffer) => {
      if (!subscriber && /subscribe/i.test(chunk.toString('latin1'))) {
        subscriber = true
        subscribers.add(link)
      }
      upstream.write(chunk)
    })
    upstream.on('data', (chunk: Buffer) => {
      if (!subscriber || !holding) client.write(chunk)
      else if (link.held) link.held.push(chunk)
      else link.held = [chunk]
    })
    const end = () => {
      client.destroy()
      upstream.destroy()
      subscribers.delete(link)
    }
    client.on('error', end).on('close', end)
    upstream.on('error', end).on('close', end)
  })
  server.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  const address = server.address() as net.AddressInfo
  return {
    url: `redis://127.0.0.1:${address.port}`,
    /** Holds back what Redis sends on subscriber connections from now on. */
    hold() {
      holding = true
    },
    /** Sends what was held, in order, and lets everything through again. */
    release() {
      holding = false
      for (const link of subscribers) {
        for (const chunk of link.held ?? []) link.client.write(chunk)
        link.held = undefined
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const link of subscribers) link.client.destroy()
        server.close(() => resolve())
      }),
  }
}

/** What the index and the hashes of a topic hold, read raw: instance → member ids. */
async function stored(topic: string): Promise<Map<string, string[]>> {
  const index = presenceIndex('handshake:', topic)
  const instances = (await redis.command('ZRANGE', index, '0', '-1')) as string[]
  const out = new Map<string, string[]>()
  for (const instance of instances) {
    const fields = (await redis.command('HKEYS', `${index}:${instance}`)) as string[]
    out.set(instance, [...fields].sort())
  }
  return out
}

const ids = (members: readonly PresenceMember[]) => members.map((member) => member.id).sort()

describe.each(CLIENT_KINDS)('presence on Redis, with %s', (kind) => {
  const started: Started[] = []
  const instance = async (options: Omit<RedisBackplaneOptions, 'client'> = {}, url?: string) => {
    const one = await start(kind, options, url)
    started.push(one)
    return one
  }
  afterEach(async () => {
    await Promise.all(started.splice(0).map((one) => one.stop()))
  })

  it("gives every other instance the joins and leaves, with the metadata, never an instance's own; a read lists everyone once", async () => {
    const a = await instance()
    const b = await instance()
    const topic = newTopic('diffs')
    const viewA = await a.watch(topic)
    const viewB = await b.watch(topic)
    a.join(topic, 'a1', { name: 'Ann', at: [1, 2] })
    a.join(topic, 'a2')
    b.join(topic, 'b1', 'bee')
    await until(() => viewB.ids().length === 3 && viewA.ids().length === 3, 5000, 'the joins')
    expect(viewB.members.get('a1')).toEqual({ name: 'Ann', at: [1, 2] })
    // B's own join never comes back to it; A's joins came as diffs.
    expect(b.diffs.flatMap((diff) => diff.joins.map((member) => member.id)).sort()).toEqual([
      'a1',
      'a2',
    ])
    expect(a.diffs.flatMap((diff) => diff.joins.map((member) => member.id))).toEqual(['b1'])
    // A read: everyone once, this instance's own as the sink has them.
    expect(ids(await a.backplane.presence.read(topic))).toEqual(['a1', 'a2', 'b1'])
    expect(ids(await b.backplane.presence.read(topic))).toEqual(['a1', 'a2', 'b1'])
    // New metadata: the old member leaves and the new joins in one diff.
    b.diffs.length = 0
    a.join(topic, 'a1', { name: 'Ann', away: true })
    await until(() => b.diffs.length === 1, 5000, 'the replacement')
    expect(b.diffs[0]!.leaves).toEqual([{ id: 'a1', meta: { name: 'Ann', at: [1, 2] } }])
    expect(b.diffs[0]!.joins).toEqual([{ id: 'a1', meta: { name: 'Ann', away: true } }])
    // A leave carries the member as it was.
    a.leave(topic, 'a2')
    await until(() => b.diffs.length === 2, 5000, 'the leave')
    expect(b.diffs[1]!.leaves).toEqual([{ id: 'a2', meta: { name: 'a2' } }])
    expect(viewB.ids()).toEqual(['a1', 'b1'])
    expect(await stored(topic)).toEqual(
      new Map([
        [a.backplane.instanceId, ['a1']],
        [b.backplane.instanceId, ['b1']],
      ]),
    )
    expect([...a.errors, ...b.errors]).toEqual([])
  })

  it('keeps call order per topic: joins and leaves of the same members, made quickly, end as the last call said', async () => {
    const a = await instance()
    const b = await instance()
    const topic = newTopic('order')
    const view = await b.watch(topic)
    const truth = new Map<string, number>()
    for (let round = 0; round < 200; round++) {
      const id = `m${round % 7}`
      if (round % 3 === 2) {
        a.leave(topic, id)
        truth.delete(id)
      } else {
        a.join(topic, id, round)
        truth.set(id, round)
      }
      // Some in the same turn (one call), some across turns (calls one after another).
      if (round % 10 === 0) await sleep(1)
    }
    const expected = [...truth.keys()].sort()
    await until(
      () =>
        view.ids().join() === expected.join() &&
        [...truth].every(([id, meta]) => view.members.get(id) === meta),
      5000,
      'the view to match the last calls',
    )
    expect((await stored(topic)).get(a.backplane.instanceId)).toEqual(expected)
    expect(ids(await b.backplane.presence.read(topic))).toEqual(expected)
    // Few calls: the changes of a turn went together.
    expect(b.diffs.length).toBeLessThan(200)
  })

  it(`a vanished instance's members leave every view within ${BOUND} ms (4 heartbeats), reported once`, async () => {
    const proxy = await proxyTo(redis.port)
    try {
      const a = await instance({}, proxy.url)
      const b = await instance()
      const c = await instance()
      const topic = newTopic('vanish')
      const viewB = await b.watch(topic)
      const viewC = await c.watch(topic)
      for (let i = 0; i < 20; i++) a.join(topic, `a${i}`)
      b.join(topic, 'b1')
      await until(() => viewB.ids().length === 21 && viewC.ids().length === 21, 5000, 'the joins')
      // Past a heartbeat, so that A's deadline is its usual distance ahead.
      await sleep(INTERVAL * 1.5)
      const vanished = Date.now()
      proxy.vanish()
      await until(
        () => viewB.ids().length === 1 && viewC.ids().length === 1,
        BOUND + SLACK + 2000,
        "A's members to leave",
      )
      const took = Math.max(...[b, c].map((one) => one.diffs.at(-1)!.at)) - vanished
      console.log(
        `[presence ${kind}] a vanished instance's 20 members left both views in ${took} ms`,
      )
      expect(took).toBeLessThanOrEqual(BOUND + SLACK)
      // Reported once: one leave of each member, by whichever instance reaped.
      const leaves = [...b.diffs, ...c.diffs].flatMap((diff) => diff.leaves.map((m) => m.id))
      expect(leaves.sort()).toEqual(
        [
          ...Array.from({ length: 20 }, (_, i) => `a${i}`),
          ...Array.from({ length: 20 }, (_, i) => `a${i}`),
        ].sort(),
      )
      expect(viewB.ids()).toEqual(['b1'])
      expect(await stored(topic)).toEqual(new Map([[b.backplane.instanceId, ['b1']]]))
    } finally {
      await proxy.close()
    }
  })

  it('Redis killed and restarted: each instance asserts its members again before up(), views converge, nobody twice', async () => {
    // A heartbeat too slow to repair anything within the test: the assertion before up() does.
    const a = await instance({ presenceInterval: 20_000 })
    const b = await instance({ presenceInterval: 20_000 })
    const topic = newTopic('restart')
    const viewA = await a.watch(topic)
    const viewB = await b.watch(topic)
    for (let i = 0; i < 10; i++) a.join(topic, `a${i}`)
    for (let i = 0; i < 10; i++) b.join(topic, `b${i}`)
    await until(() => viewA.ids().length === 20 && viewB.ids().length === 20, 5000, 'the joins')
    await redis.kill()
    // Changes made during the outage, on A (B makes none: only the assertion brings its
    // members back): the assertion carries them.
    a.leave(topic, 'a0')
    a.join(topic, 'a10', { name: 'a10', late: true })
    await sleep(300)
    const restarted = Date.now()
    await redis.restart()
    await until(() => a.ups.length > 0 && b.ups.length > 0, 15_000, 'both up()')
    const expected = [
      ...Array.from({ length: 9 }, (_, i) => `a${i + 1}`),
      'a10',
      ...Array.from({ length: 10 }, (_, i) => `b${i}`),
    ].sort()
    await until(
      () => viewA.ids().join() === expected.join() && viewB.ids().join() === expected.join(),
      5000,
      'the views to converge',
    )
    console.log(
      `[presence ${kind}] Redis restarted: views converged ${Date.now() - restarted} ms after it accepted connections again`,
    )
    expect(viewB.all().get('a10')).toEqual({ name: 'a10', late: true })
    // At each up(), Redis held that instance's members already.
    const [heldA] = await Promise.all(a.heldAtUp)
    const [heldB] = await Promise.all(b.heldAtUp)
    expect(Array.isArray(heldA) && heldA.filter((_, i) => i % 2 === 0).sort()).toEqual(
      expected.filter((id) => id.startsWith('a')),
    )
    expect(Array.isArray(heldB) && heldB.filter((_, i) => i % 2 === 0).sort()).toEqual(
      expected.filter((id) => id.startsWith('b')),
    )
    expect(ids(await a.backplane.presence.read(topic))).toEqual(expected)
    const held = await stored(topic)
    expect([...held.values()].flat().sort()).toEqual(expected)
  }, 40_000)

  it('the subscriber connection killed (CLIENT KILL TYPE pubsub): a join meanwhile reaches the view through the read after up()', async () => {
    const a = await instance()
    const b = await instance()
    const topic = newTopic('pubsub-killed')
    const viewB = await b.watch(topic)
    await a.watch(topic)
    a.join(topic, 'a1')
    await until(() => viewB.ids().length === 1, 5000, 'the join')
    const killed = await redis.command('CLIENT', 'KILL', 'TYPE', 'pubsub')
    expect(killed).toBeGreaterThanOrEqual(2)
    a.join(topic, 'a2')
    a.leave(topic, 'a1')
    await until(() => b.ups.length > 0, 10_000, "B's up()")
    await until(() => viewB.ids().join() === 'a2', 5000, 'the view to converge')
    expect(await stored(topic)).toEqual(new Map([[a.backplane.instanceId, ['a2']]]))
  })

  it('a read that overtakes diffs still on their way (a slow subscriber connection): the older diffs never take the view back', async () => {
    const proxy = await laggingProxyTo(redis.port)
    try {
      const a = await instance({}, proxy.url)
      const b = await instance()
      const topic = newTopic('overtaken')
      b.join(topic, 'x', 1)
      await until(async () => (await stored(topic)).size === 1, 5000, 'the join')
      const view = await a.watch(topic)
      expect(view.ids()).toEqual(['x'])
      // A's subscriber connection lags: B's member leaves, joins again and leaves, and A
      // reads the topic again (as after an outage) while those diffs are still on their way.
      proxy.hold()
      const members = async () => (await stored(topic)).get(b.backplane.instanceId) ?? []
      b.leave(topic, 'x')
      await until(async () => (await members()).length === 0, 5000, 'the leave')
      b.join(topic, 'x', 2)
      await until(async () => (await members()).length === 1, 5000, 'the join again')
      b.leave(topic, 'x')
      await until(async () => (await members()).length === 0, 5000, 'the last leave')
      const before = view.settled.length
      const loading = view.load()
      await sleep(300)
      proxy.release()
      await loading
      await until(() => a.diffs.length >= 3, 5000, "B's three diffs at A")
      await sleep(100)
      // Once it read that x had left, the view never listed x again.
      const after = view.settled.slice(before)
      expect(after.length).toBeGreaterThan(0)
      expect(after.filter((listed) => listed.includes('x'))).toEqual([])
      expect(view.ids()).toEqual([])
      expect([...a.errors, ...b.errors]).toEqual([])
    } finally {
      // A's connections go through the proxy: A first.
      await Promise.all(started.splice(0).map((one) => one.stop()))
      await proxy.close()
    }
  })

  it('scripts flushed (SCRIPT FLUSH): calls still reach Redis, in order', async () => {
    const a = await instance()
    const b = await instance()
    const topic = newTopic('noscript')
    const view = await b.watch(topic)
    a.join(topic, 'x', 1)
    await until(() => view.ids().length === 1, 5000, 'the join')
    for (let i = 0; i < 5; i++) {
      await redis.command('SCRIPT', 'FLUSH')
      a.leave(topic, 'x')
      await sleep(0)
      a.join(topic, 'x', i + 2)
      await sleep(0)
      a.join(topic, 'y', i)
      a.leave(topic, 'y')
    }
    await until(() => view.members.get('x') === 6 && !view.members.has('y'), 5000, 'the last state')
    expect(await stored(topic)).toEqual(new Map([[a.backplane.instanceId, ['x']]]))
    expect([...a.errors, ...b.errors]).toEqual([])
  })

  it('an instance reaped while alive (away past its deadline) joins its members again, a leave then a join', async () => {
    const a = await instance()
    const b = await instance()
    const topic = newTopic('reaped')
    const view = await b.watch(topic)
    a.join(topic, 'a1')
    a.join(topic, 'a2')
    await until(() => view.ids().length === 2, 5000, 'the joins')
    // As a reaper would find A: its deadline passed. B's read reaps it (unless A's heartbeat
    // came first and moved its deadline on: then again).
    const index = presenceIndex('handshake:', topic)
    for (let tries = 0; tries < 5 && view.ids().length > 0; tries++) {
      await redis.command('ZADD', index, '1', a.backplane.instanceId)
      await b.backplane.presence.read(topic)
      await sleep(20)
    }
    expect(view.ids()).toEqual([])
    // A's next call sees it was reaped, and asserts its members again.
    await until(() => view.ids().length === 2, 2000, 'the members again')
    const forA = b.diffs.filter((diff) => diff.joins.length > 0 || diff.leaves.length > 0)
    expect(forA.map((diff) => [ids(diff.joins), ids(diff.leaves)])).toEqual([
      [['a1', 'a2'], []],
      [[], ['a1', 'a2']],
      [['a1', 'a2'], []],
    ])
    expect(a.errors).toEqual([])
  })

  it('the wall clock stepped back an hour: the heartbeat goes on, and the members stay listed', async () => {
    const a = await instance()
    const b = await instance()
    const topic = newTopic('clock')
    const view = await b.watch(topic)
    a.join(topic, 'a1')
    await until(() => view.ids().length === 1, 5000, 'the join')
    // An NTP step or a VM's resume sets the wall clock back; Redis's clock, which the
    // deadlines use, goes on.
    const wall = Date.now.bind(Date)
    const clock = vi.spyOn(Date, 'now').mockImplementation(() => wall() - 3_600_000)
    try {
      await sleep(2 * BOUND)
      // A read reaps the instances past their deadline: A's heartbeat kept it alive.
      expect(ids(await b.backplane.presence.read(topic))).toEqual(['a1'])
      expect(view.ids()).toEqual(['a1'])
    } finally {
      clock.mockRestore()
    }
    expect([...a.errors, ...b.errors]).toEqual([])
  })

  it("an observer with no member reaps too, and a closed instance's members leave at once", async () => {
    const a = await instance()
    const b = await instance()
    const topic = newTopic('close')
    const view = await b.watch(topic)
    a.join(topic, 'a1')
    await until(() => view.ids().length === 1, 5000, 'the join')
    const closed = Date.now()
    await a.stop()
    started.splice(started.indexOf(a), 1)
    await until(() => view.ids().length === 0, 2000, 'the leave')
    expect(Date.now() - closed).toBeLessThan(BOUND)
    expect(await stored(topic)).toEqual(new Map())
  })

  it('a dead instance with many members is reaped in pieces, none blocking Redis for long, all within the bound', async () => {
    const b = await instance()
    const topic = newTopic('big-dead')
    const view = await b.watch(topic)
    // An instance that died with 5,000 members, its deadline passed.
    const index = presenceIndex('handshake:', topic)
    const dead = 'deaddeaddeaddead'
    const fields: string[] = []
    for (let i = 0; i < 5000; i++) fields.push(`m${i}`, JSON.stringify({ name: `member ${i}` }))
    await redis.command('HSET', `${index}:${dead}`, ...fields)
    await redis.command('ZADD', index, '1', dead)
    const reaped = Date.now()
    await until(
      () => b.diffs.reduce((n, diff) => n + diff.leaves.length, 0) === 5000,
      5000,
      'every leave',
    )
    // Every leave once, in pieces of at most 1,000 (each piece one short script).
    expect(Math.max(...b.diffs.map((diff) => diff.leaves.length))).toBeLessThanOrEqual(1000)
    expect(new Set(b.diffs.flatMap((diff) => diff.leaves.map((m) => m.id))).size).toBe(5000)
    expect(Date.now() - reaped).toBeLessThan(BOUND + SLACK)
    expect(view.ids()).toEqual([])
    expect(await stored(topic)).toEqual(new Map())
    expect(b.errors).toEqual([])
  })

  it('the heartbeat is one call per topic per interval, whatever its member count', async () => {
    const a = await instance()
    const topic = newTopic('quiet')
    for (let i = 0; i < 100; i++) a.join(topic, `m${i}`)
    await until(async () => (await stored(topic)).size === 1, 5000, 'the joins')
    const before = await commandCount()
    await sleep(INTERVAL * 10)
    const calls = (await commandCount()) - before
    // One heartbeat per interval for the topic, whatever its member count.
    expect(calls).toBeGreaterThanOrEqual(5)
    expect(calls).toBeLessThanOrEqual(12)
  })

  it('a read of a topic not held here (nor joined) costs that read only, no heartbeat after it', async () => {
    const a = await instance()
    const b = await instance()
    const topic = newTopic('unheld')
    a.join(topic, 'a1')
    await until(async () => (await stored(topic)).size === 1, 5000, 'the join')
    expect(ids(await b.backplane.presence.read(topic))).toEqual(['a1'])
    // A's heartbeat goes on; B sends nothing more for the topic.
    const calls = await callsOf(async () => {
      await sleep(INTERVAL * 10)
    })
    expect(calls).toBeGreaterThanOrEqual(5)
    expect(calls).toBeLessThanOrEqual(12)
  })

  it('a member metadata of every JSON kind goes through unchanged', async () => {
    const a = await instance()
    const b = await instance()
    const topic = newTopic('kinds')
    const view = await b.watch(topic)
    const metas: PresenceMeta[] = [null, true, 0, -1.5e300, '', 'é\u2028"\\/', [], {}, { a: [{}] }]
    for (const [i, meta] of metas.entries()) a.join(topic, `k${i}/"é`, meta)
    await until(() => view.ids().length === metas.length, 5000, 'the joins')
    for (const [i, meta] of metas.entries()) expect(view.members.get(`k${i}/"é`)).toEqual(meta)
    const read = await b.backplane.presence.read(topic)
    expect(new Map(read.map((member) => [member.id, member.meta]))).toEqual(view.members)
  })
})

/** The commands the README says presence needs, besides the backplane's pub/sub and PING. */
const PRESENCE_COMMANDS = [
  'evalsha',
  'eval',
  'time',
  'zrangebyscore',
  'zscore',
  'zadd',
  'zrem',
  'hrandfield',
  'hgetall',
  'hget',
  'hset',
  'hdel',
  'hlen',
  'del',
  'pexpire',
  'pttl',
  'publish',
]

describe.each(CLIENT_KINDS)('presence with a Redis user of the least rights, with %s', (kind) => {
  it("works with the README's commands on the prefix's keys and channels", async () => {
    const user = `presence-${kind}`
    await redis.command(
      'ACL',
      'SETUSER',
      user,
      'reset',
      'on',
      '>secret',
      '~handshake:*',
      '&handshake:*',
      // What any client needs to connect (HELLO, CLIENT SETINFO, the ready check's INFO), and
      // the backplane's pub/sub.
      '+@connection',
      '+info',
      '+subscribe',
      '+unsubscribe',
      ...PRESENCE_COMMANDS.map((command) => `+${command}`),
    )
    const url = redis.url.replace('redis://', `redis://${user}:secret@`)
    const a = await start(kind, {}, url)
    const b = await start(kind, {}, url)
    try {
      const topic = newTopic('acl')
      const view = await b.watch(topic)
      a.join(topic, 'a1')
      a.join(topic, 'a2')
      a.leave(topic, 'a2')
      await until(() => view.ids().join() === 'a1', 5000, 'the join')
      await sleep(INTERVAL * 2)
      expect([...a.errors, ...b.errors]).toEqual([])
      // Without one of them, a change is refused and reported.
      await redis.command('ACL', 'SETUSER', user, '-zadd')
      a.join(topic, 'a3')
      await until(() => a.errors.length > 0, 5000, 'the refusal')
      expect(String(a.errors[0])).toMatch(/refused presence's script .*grant .*ZADD/)
      // Reported once, not at each heartbeat; the restore is not held back by it.
      await until(() => a.ups.length > 0, 5000, 'up()')
      const reported = a.errors.length
      await sleep(INTERVAL * 3)
      expect(a.errors.length).toBe(reported)
    } finally {
      await a.stop()
      await b.stop()
    }
  })
})

/** How many EVALSHA and EVAL Redis ran during `run`. */
async function callsOf(run: () => Promise<void>): Promise<number> {
  const before = await commandCount()
  await run()
  return (await commandCount()) - before
}

/** How many EVALSHA and EVAL Redis ran so far (INFO commandstats). */
async function commandCount(): Promise<number> {
  const info = String(await redis.command('INFO', 'commandstats'))
  let total = 0
  for (const name of ['evalsha', 'eval']) {
    const match = new RegExp(`^cmdstat_${name}:calls=(\\d+)`, 'm').exec(info)
    if (match) total += Number(match[1])
  }
  return total
}

it('the script is one, loaded by SHA-1', () => {
  expect(PRESENCE_SCRIPT).toContain("redis.call('TIME')")
})
