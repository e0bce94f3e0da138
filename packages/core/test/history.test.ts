/**
 * Positions, history and recovery on one hub (issue 20): the memory store, the frame, and
 * `conn.subscribe(topic, { since })` while publishes go on, through the test kit.
 */
import { Hono } from 'hono'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createHub, HISTORY_STORE, type HistoryRead, type HistoryStore } from '../src/adapter.js'
import { MemoryHistory } from '../src/history.js'
import {
  GapEvent,
  type Hub,
  type Position,
  type TopicsHistoryOptions,
  upgrade,
} from '../src/index.js'
import { connect, TestTree } from '../src/testing.js'
import { frameAsJson, next, offsets, range, readFramed, untilSubscribed } from './framed.js'

const quiet = { error: vi.fn() }
const tick = () => new Promise((resolve) => setTimeout(resolve, 0))

/** Frames every delivery as JSON, and counts the calls. */
function jsonFrame() {
  return vi.fn(frameAsJson)
}

/**
 * An app on `hub`: `GET /t/:topic[?epoch=&offset=]` subscribes (from that position) and sends
 * `{ t: 'sub', position, recovered }` once subscribed, then publishes what it receives.
 */
function topicApp(hub: Hub) {
  const app = new Hono()
  app.get(
    '/t/:topic',
    upgrade(
      {
        async serve(conn, c) {
          const topic = c.req.param('topic') as string
          const epoch = c.req.query('epoch')
          const since = epoch ? { epoch, offset: Number(c.req.query('offset')) } : undefined
          const subscription = await conn.subscribe(topic, { since })
          await conn.send(JSON.stringify({ t: 'sub', ...subscription }))
          for await (const msg of conn) conn.publish(topic, msg.data)
        },
      },
      { logger: quiet },
    ),
  )
  const join = async (topic: string, since?: Position, tree?: TestTree) => {
    const query = since ? `?epoch=${since.epoch}&offset=${since.offset}` : ''
    return connect(app, `/t/${topic}${query}`, { hub, tree })
  }
  return { app, join }
}

function hubWithHistory(options: Partial<TopicsHistoryOptions> = {}, store?: HistoryStore) {
  const hub = createHub({ logger: quiet })
  if (store) hub.topics[HISTORY_STORE] = store
  const frame = jsonFrame()
  hub.topics.useHistory({ history: () => ({ size: 100, ttl: 60_000 }), frame, ...options })
  return { hub, frame }
}

afterEach(() => {
  vi.useRealTimers()
})

describe('the memory history', () => {
  it('gives offsets from 1 in a random epoch, keeps the last `size`, and reads after a position', () => {
    const store = new MemoryHistory()
    const first = store.append('t', 'a', { size: 3, ttl: 1000 })
    expect(first.offset).toBe(1)
    expect(first.epoch).toMatch(/^[0-9a-f]{16}$/)
    for (const data of ['b', 'c', 'd', 'e']) store.append('t', data, { size: 3, ttl: 1000 })
    const { epoch } = first
    expect(store.read('t', undefined, 10)).toEqual({
      epoch,
      offset: 5,
      messages: [],
      complete: true,
    })
    expect(store.read('t', { epoch, offset: 3 }, 10)).toEqual({
      epoch,
      offset: 5,
      messages: [
        { offset: 4, data: 'd' },
        { offset: 5, data: 'e' },
      ],
      complete: true,
    })
    expect(store.read('t', { epoch, offset: 2 }, 1)).toMatchObject({
      messages: [{ offset: 3, data: 'c' }],
      complete: true,
    })
    // Trimmed past it: from the oldest kept, incomplete.
    expect(store.read('t', { epoch, offset: 1 }, 10)).toMatchObject({
      messages: [{ offset: 3 }, { offset: 4 }, { offset: 5 }],
      complete: false,
    })
    // Another epoch, or a position ahead of the history: from the oldest kept, incomplete.
    expect(store.read('t', { epoch: 'other', offset: 5 }, 10)).toMatchObject({
      messages: [{ offset: 3 }, { offset: 4 }, { offset: 5 }],
      complete: false,
    })
    expect(store.read('t', { epoch, offset: 9 }, 10).complete).toBe(false)
    // Another topic has its own epoch and offsets.
    const other = store.append('u', 'x', { size: 3, ttl: 1000 })
    expect(other.offset).toBe(1)
    expect(other.epoch).not.toBe(epoch)
  })

  it('reads a topic before its first message in the epoch that message gets', () => {
    const store = new MemoryHistory(() => ({ size: 2, ttl: 1000 }))
    const before = store.read('t', undefined, 0)
    expect(before.offset).toBe(0)
    expect(store.append('t', 'a', { size: 2, ttl: 1000 })).toEqual({
      epoch: before.epoch,
      offset: 1,
    })
    expect(store.read('t', { epoch: before.epoch, offset: 0 }, 5)).toMatchObject({
      messages: [{ offset: 1, data: 'a' }],
      complete: true,
    })
  })

  it('drops a history `ttl` after its last publish: the next one starts a new epoch', () => {
    vi.useFakeTimers()
    const store = new MemoryHistory()
    const first = store.append('t', 'a', { size: 10, ttl: 1000 })
    vi.advanceTimersByTime(900)
    expect(store.append('t', 'b', { size: 10, ttl: 1000 })).toEqual({
      epoch: first.epoch,
      offset: 2,
    })
    vi.advanceTimersByTime(999)
    expect(store.read('t', undefined, 0)).toMatchObject({ epoch: first.epoch, offset: 2 })
    vi.advanceTimersByTime(1)
    const after = store.append('t', 'c', { size: 10, ttl: 1000 })
    expect(after.epoch).not.toBe(first.epoch)
    expect(after.offset).toBe(1)
    expect(store.read('t', { epoch: first.epoch, offset: 2 }, 10)).toMatchObject({
      messages: [{ offset: 1, data: 'c' }],
      complete: false,
    })
  })
})

describe('the memory history’s sweep', () => {
  it('drops every expired history on a publish, at most once a second, with no timer', () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    const store = new MemoryHistory()
    for (const topic of ['a', 'b', 'c']) store.append(topic, 'x', { size: 5, ttl: 100 })
    store.append('long', 'x', { size: 5, ttl: 60_000 })
    expect(store.size).toBe(4)
    vi.setSystemTime(Date.now() + 500)
    // Within a second of the first sweep: only the topic published is looked at.
    store.append('d', 'x', { size: 5, ttl: 100 })
    expect(store.size).toBe(5)
    vi.setSystemTime(Date.now() + 600)
    store.append('e', 'x', { size: 5, ttl: 100 })
    expect(store.size).toBe(2) // 'long', and 'e' itself
  })
})

describe('useHistory', () => {
  it('refuses what is not a history function or a frame function, and a second call', () => {
    const topics = createHub().topics
    // @ts-expect-error: no history function
    expect(() => topics.useHistory({})).toThrow(TypeError)
    expect(() =>
      // @ts-expect-error: a frame that is not a function
      topics.useHistory({ history: () => undefined, frame: 'json' }),
    ).toThrow(/frame is a function/)
    topics.useHistory({ history: () => undefined })
    expect(() => topics.useHistory({ history: () => undefined })).toThrow(/once, at startup/)
  })

  it.each([
    [{ size: 0, ttl: 1000 }, /size 0: the most messages kept is a whole number of at least 1/],
    [{ size: 1.5, ttl: 1000 }, /size 1.5/],
    [{ size: 10, ttl: 0 }, /ttl 0: .* above 0/],
    [{ size: 10, ttl: Number.POSITIVE_INFINITY }, /ttl Infinity/],
    [{ size: 10, ttl: Number.NaN }, /ttl NaN/],
  ])(
    'refuses %o: publish throws, subscribe rejects and holds nothing',
    async (options, message) => {
      const hub = createHub()
      hub.topics.useHistory({ history: () => options })
      expect(() => hub.topics.publish('t', 'x')).toThrow(message)
      let subscribed: Promise<unknown> | undefined
      const peer = await connect(
        {
          async serve(conn) {
            subscribed = conn.subscribe('t')
            await subscribed.catch(() => {})
            await conn.send(String(conn.topics.size))
            await conn.read()
          },
        },
        '/',
        { hub },
      )
      expect(await peer.read()).toEqual({ type: 'text', data: '0' })
      await expect(subscribed).rejects.toThrow(RangeError)
      await expect(subscribed).rejects.toThrow(message)
      expect(hub.topics.subscribers('t')).toBe(0)
      await expect(hub.topics.position('t')).rejects.toThrow(message)
    },
  )

  it('refuses a since that is not a position', async () => {
    const { hub } = hubWithHistory()
    let subscribed: Promise<unknown> | undefined
    await connect(
      {
        serve(conn) {
          // @ts-expect-error: not a position
          subscribed = conn.subscribe('t', { since: { epoch: 1, offset: -1 } })
          return subscribed.catch(() => {})
        },
      },
      '/',
      { hub },
    )
    await expect(subscribed).rejects.toThrow(/since is a position/)
    expect(hub.topics.subscribers('t')).toBe(0)
  })
})

describe('positions and the frame, on one hub', () => {
  it('gives each message the next position, frames it once per delivery, and sends the same data to every subscriber', async () => {
    const { hub, frame } = hubWithHistory()
    const { join } = topicApp(hub)
    const tree = new TestTree()
    const peers = [
      await join('t'),
      await join('t'),
      await join('t', undefined, tree),
      await join('t', undefined, tree),
    ]
    const subs = await Promise.all(peers.map(untilSubscribed))
    for (const { sub } of subs)
      expect(sub).toMatchObject({ position: { offset: 0 }, recovered: true })
    const epoch = subs[0]?.sub.position?.epoch as string
    expect(await hub.topics.position('t')).toEqual({ epoch, offset: 0 })
    frame.mockClear()
    for (let i = 1; i <= 5; i++) hub.topics.publish('t', `m${i}`)
    expect(frame).toHaveBeenCalledTimes(5)
    // The tree's two sockets cost one tree publish per message.
    expect(tree.publishes).toBe(5)
    for (const peer of peers) {
      const got = await readFramed(peer, 5)
      expect(got).toEqual(range(1, 5).map((o) => ({ t: 'm', e: epoch, o, d: `m${o}` })))
    }
    expect(await hub.topics.position('t')).toEqual({ epoch, offset: 5 })
    expect(await hub.topics.position('elsewhere')).toEqual({ epoch: expect.any(String), offset: 0 })
  })

  it('sends the raw data by default, and nothing for a frame that answers undefined', async () => {
    const hub = createHub()
    hub.topics.useHistory({
      history: (topic) => (topic === 'kept' ? { size: 5, ttl: 1000 } : undefined),
    })
    const { join } = topicApp(hub)
    const peer = await join('kept')
    const plain = await join('plain')
    expect((await untilSubscribed(peer)).sub).toMatchObject({
      position: { offset: 0 },
      recovered: true,
    })
    // A topic without history has no position.
    expect((await untilSubscribed(plain)).sub).toEqual({ t: 'sub', recovered: true })
    expect(await hub.topics.position('plain')).toBeUndefined()
    hub.topics.publish('kept', 'raw')
    hub.topics.publish('plain', 'plain')
    expect(await peer.read()).toEqual({ type: 'text', data: 'raw' })
    expect(await plain.read()).toEqual({ type: 'text', data: 'plain' })

    const silent = createHub()
    silent.topics.useHistory({
      history: () => ({ size: 5, ttl: 1000 }),
      frame: (d) => (d.type === 'message' && d.data === 'skip' ? undefined : 'x'),
    })
    const quietPeer = await topicApp(silent).join('t')
    await quietPeer.read()
    silent.topics.publish('t', 'skip')
    silent.topics.publish('t', 'send')
    expect(await quietPeer.read()).toEqual({ type: 'text', data: 'x' })
    expect(await silent.topics.position('t')).toMatchObject({ offset: 2 })
  })

  it('answers a second subscribe of the same topic with where the connection is, and changes nothing', async () => {
    const { hub } = hubWithHistory()
    let again: unknown
    const peer = await connect(
      {
        async serve(conn) {
          await conn.subscribe('t')
          conn.hub.topics.publish('t', 'one')
          again = await conn.subscribe('t', { since: { epoch: 'other', offset: 0 } })
          await conn.send('done')
          await conn.read()
        },
      },
      '/',
      { hub },
    )
    expect(await next(peer)).toMatchObject({ o: 1, d: 'one' })
    expect(await peer.read()).toEqual({ type: 'text', data: 'done' })
    expect(again).toEqual({ position: await hub.topics.position('t'), recovered: true })
    expect(hub.topics.subscribers('t')).toBe(1)
  })

  it("does not send a connection's own message back to it", async () => {
    const { hub } = hubWithHistory()
    const { join } = topicApp(hub)
    const alice = await join('t')
    const bob = await join('t')
    await untilSubscribed(alice)
    await untilSubscribed(bob)
    alice.send('from alice')
    expect(await next(bob)).toMatchObject({ t: 'm', o: 1, d: 'from alice' })
    hub.topics.publish('t', 'end')
    expect(await next(alice)).toMatchObject({ o: 2, d: 'end' })
  })
})

/** A store that answers reads only when let through, so that publishes happen meanwhile. */
class SlowStore implements HistoryStore {
  readonly inner = new MemoryHistory(() => ({ size: 1000, ttl: 60_000 }))
  held: (() => void)[] = []
  hold = false
  reads = 0
  append(topic: string, data: string | Uint8Array, options: { size: number; ttl: number }) {
    return this.inner.append(topic, data, options)
  }
  read(
    topic: string,
    since: Position | undefined,
    limit: number,
  ): Promise<HistoryRead> | HistoryRead {
    this.reads++
    if (!this.hold) return this.inner.read(topic, since, limit)
    // Read now, answered later: publishes go on in between.
    const read = this.inner.read(topic, since, limit)
    return new Promise((resolve) => this.held.push(() => resolve(read)))
  }
  release(): void {
    const held = this.held
    this.held = []
    for (const resolve of held) resolve()
  }
}

describe('recovery on subscribe, on one hub', () => {
  it('sends every message after since, in order, once, then the live ones, while publishes go on', async () => {
    const store = new SlowStore()
    const { hub } = hubWithHistory({}, store)
    const { join } = topicApp(hub)
    const watcher = await join('t')
    await untilSubscribed(watcher)
    for (let i = 1; i <= 10; i++) hub.topics.publish('t', `m${i}`)
    const epoch = (await hub.topics.position('t'))?.epoch as string
    store.hold = true
    const late = await join('t', { epoch, offset: 3 })
    await vi.waitFor(() => expect(store.held.length).toBe(1))
    // Published while the history is being read.
    for (let i = 11; i <= 15; i++) hub.topics.publish('t', `m${i}`)
    store.release()
    await tick()
    for (let i = 16; i <= 20; i++) hub.topics.publish('t', `m${i}`)
    const { before, sub } = await untilSubscribed(late)
    expect(sub).toEqual({ t: 'sub', position: { epoch, offset: 15 }, recovered: true })
    const after = await readFramed(late, 5)
    expect(offsets([...before, ...after])).toEqual(range(4, 20))
    expect([...before, ...after].map((m) => m.d)).toEqual(range(4, 20).map((o) => `m${o}`))
    expect((await readFramed(watcher, 20)).map((m) => m.o)).toEqual(range(1, 20))
  })

  it('recovers a subscriber of a runtime tree outside the tree, then joins it', async () => {
    const store = new SlowStore()
    const { hub, frame } = hubWithHistory({}, store)
    const { join } = topicApp(hub)
    const tree = new TestTree()
    const watcher = await join('t', undefined, tree)
    await untilSubscribed(watcher)
    for (let i = 1; i <= 4; i++) hub.topics.publish('t', `m${i}`)
    const epoch = (await hub.topics.position('t'))?.epoch as string
    store.hold = true
    const late = await join('t', { epoch, offset: 1 }, tree)
    await vi.waitFor(() => expect(store.held.length).toBe(1))
    expect(tree.subscribed.get('t')?.size).toBe(1)
    frame.mockClear()
    for (let i = 5; i <= 7; i++) hub.topics.publish('t', `m${i}`)
    // Framed once per delivery, though one subscriber buffers it.
    expect(frame).toHaveBeenCalledTimes(3)
    store.release()
    const { before, sub } = await untilSubscribed(late)
    expect(sub).toMatchObject({ position: { epoch, offset: 7 }, recovered: true })
    expect(tree.subscribed.get('t')?.size).toBe(2)
    hub.topics.publish('t', 'm8')
    expect(offsets([...before, await next(late)])).toEqual(range(2, 8))
    expect(offsets(await readFramed(watcher, 8))).toEqual(range(1, 8))
  })

  it('tells of a gap when since is older than the history keeps: what it holds, from its oldest, recovered false', async () => {
    const { hub } = hubWithHistory({ history: () => ({ size: 3, ttl: 60_000 }) })
    const { join } = topicApp(hub)
    for (let i = 1; i <= 6; i++) hub.topics.publish('t', `m${i}`)
    const epoch = (await hub.topics.position('t'))?.epoch as string
    const late = await join('t', { epoch, offset: 1 })
    const { before, sub } = await untilSubscribed(late)
    expect(before[0]).toEqual({ t: 'g', e: epoch, o: 3, r: 'trimmed' })
    expect(offsets(before)).toEqual(['gap3', 4, 5, 6])
    expect(sub).toEqual({ t: 'sub', position: { epoch, offset: 6 }, recovered: false })
  })

  it('tells of a gap when since is of another epoch (the history expired meanwhile)', async () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    const { hub } = hubWithHistory({ history: () => ({ size: 10, ttl: 1000 }) })
    const { join } = topicApp(hub)
    hub.topics.publish('t', 'old')
    const old = (await hub.topics.position('t')) as Position
    vi.setSystemTime(Date.now() + 1000)
    hub.topics.publish('t', 'new')
    const now = (await hub.topics.position('t')) as Position
    expect(now.epoch).not.toBe(old.epoch)
    expect(now.offset).toBe(1)
    const late = await join('t', old)
    const { before, sub } = await untilSubscribed(late)
    expect(before).toEqual([
      { t: 'g', e: now.epoch, o: 0, r: 'epoch' },
      { t: 'm', e: now.epoch, o: 1, d: 'new' },
    ])
    expect(sub).toEqual({ t: 'sub', position: now, recovered: false })
  })

  it('recovers nothing, and says so, for since on a topic without history', async () => {
    const hub = createHub()
    hub.topics.useHistory({ history: () => undefined })
    const late = await topicApp(hub).join('t', { epoch: 'e', offset: 3 })
    expect((await untilSubscribed(late)).sub).toEqual({ t: 'sub', recovered: false })
  })

  it('sends nothing more to a subscriber that leaves during its recovery, and keeps no hold on the topic', async () => {
    const store = new SlowStore()
    const { hub } = hubWithHistory({}, store)
    const { join } = topicApp(hub)
    hub.topics.publish('t', 'm1')
    const epoch = (await hub.topics.position('t'))?.epoch as string
    store.hold = true
    const late = await join('t', { epoch, offset: 0 })
    await vi.waitFor(() => expect(store.held.length).toBe(1))
    expect(hub.topics.subscribers('t')).toBe(1)
    late.cut()
    expect((await late.closed).code).toBe(1006)
    await vi.waitFor(() => expect(hub.topics.subscribers('t')).toBe(0))
    expect(hub.topics.names()).toEqual([])
    store.release()
    await tick()
    expect(hub.topics.names()).toEqual([])
  })

  it('goes on from the live messages, recovered false, when the history cannot be read', async () => {
    const onError = vi.fn()
    const hub = createHub({ onError })
    const store = new MemoryHistory()
    hub.topics[HISTORY_STORE] = {
      append: (topic, data, options) => store.append(topic, data, options),
      read: () => Promise.reject(new Error('storage failed')),
    }
    hub.topics.useHistory({ history: () => ({ size: 10, ttl: 1000 }), frame: jsonFrame() })
    const late = await topicApp(hub).join('t', { epoch: 'e', offset: 1 })
    const { before, sub } = await untilSubscribed(late)
    expect(before).toEqual([])
    // Where it starts: the position it gave.
    expect(sub).toEqual({ t: 'sub', position: { epoch: 'e', offset: 1 }, recovered: false })
    expect(onError).toHaveBeenCalledWith(expect.objectContaining({ message: 'storage failed' }))
    hub.topics.publish('t', 'live')
    expect(await next(late)).toMatchObject({ t: 'm', o: 1, d: 'live' })
  })
})

describe('a frame that throws', () => {
  it('is reported, and sends nothing for that delivery, to anyone; publish does not throw', async () => {
    const onError = vi.fn()
    const hub = createHub({ onError })
    hub.topics.useHistory({
      history: () => ({ size: 10, ttl: 60_000 }),
      frame: (d) => {
        if (d.type === 'message' && d.data === 'bad') throw new Error('frame failed')
        return d.type === 'message' ? d.data : undefined
      },
    })
    const peer = await topicApp(hub).join('t')
    await peer.read()
    expect(() => hub.topics.publish('t', 'bad')).not.toThrow()
    hub.topics.publish('t', 'good')
    expect(await peer.read()).toEqual({ type: 'text', data: 'good' })
    expect(onError).toHaveBeenCalledWith(expect.objectContaining({ message: 'frame failed' }))
    expect(await hub.topics.position('t')).toMatchObject({ offset: 2 })
  })
})

describe('GapEvent', () => {
  it('is an Event named gap that carries the topic, position, reason and count', () => {
    const event = new GapEvent('t', { epoch: 'e', offset: 4 }, 'trimmed', 2)
    expect(event).toBeInstanceOf(Event)
    expect(event).toMatchObject({
      type: 'gap',
      topic: 't',
      position: { epoch: 'e', offset: 4 },
      reason: 'trimmed',
      lost: 2,
    })
  })
})
