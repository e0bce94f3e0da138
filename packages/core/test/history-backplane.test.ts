/**
 * Positions, history and recovery across hubs (issue 20), on the test kit's memory backplane:
 * its faults (messages dropped, a subscription cut, histories lost) must never make a
 * subscriber miss a message silently, or get one twice, or out of order.
 */
import { Hono } from 'hono'
import { describe, expect, it, vi } from 'vitest'
import { type Backplane, createHub } from '../src/adapter.js'
import {
  type GapEvent,
  type Hub,
  type Position,
  type TopicsHistoryOptions,
  upgrade,
} from '../src/index.js'
import { MAX_HELD } from '../src/sequencer.js'
import { connect, memoryBackplane, TestTree } from '../src/testing.js'
import { frameAsJson, next, offsets, range, readFramed, untilSubscribed } from './framed.js'

const quiet = { error: vi.fn() }

const frame = frameAsJson

/** An instance: a hub on the bus, with an app that subscribes (from `since`) and publishes. */
async function instance(
  backplane: Backplane,
  history: TopicsHistoryOptions['history'] = () => ({ size: 1000, ttl: 60_000 }),
) {
  const onError = vi.fn()
  const hub: Hub = createHub({ onError })
  hub.topics.useHistory({ history, frame })
  await hub.topics.useBackplane(backplane)
  const gaps: GapEvent[] = []
  hub.topics.addEventListener('gap', (event) => gaps.push(event as GapEvent))
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
    const peer = await connect(app, `/t/${topic}${query}`, { hub, tree })
    const { before, sub } = await untilSubscribed(peer)
    return { peer, before, sub }
  }
  return { hub, topics: hub.topics, join, gaps, onError, backplane }
}

const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 0))
}

describe('positions across hubs', () => {
  it('numbers a topic’s messages once across hubs, and every subscriber gets each once, in order, but its own', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const b = await instance(bus.backplane())
    const alice = await a.join('t')
    const bob = await b.join('t')
    const carol = await b.join('t')
    expect(alice.sub).toMatchObject({ position: { offset: 0 }, recovered: true })
    const epoch = alice.sub.position?.epoch
    expect(bob.sub.position).toEqual(alice.sub.position)
    for (let i = 1; i <= 10; i++) {
      alice.peer.send(`a${i}`)
      a.topics.publish('t', `r${i}`)
      b.topics.publish('t', `s${i}`)
    }
    const got = await readFramed(carol.peer, 30)
    expect(offsets(got)).toEqual(range(1, 30))
    expect(new Set(got.map((m) => m.e))).toEqual(new Set([epoch]))
    // Each publisher's messages in its order.
    for (const prefix of ['a', 'r', 's']) {
      expect(got.filter((m) => m.d?.startsWith(prefix)).map((m) => m.d)).toEqual(
        range(1, 10).map((i) => `${prefix}${i}`),
      )
    }
    expect(await readFramed(bob.peer, 30)).toEqual(got)
    // Alice's own messages did not come back to her.
    const toAlice = await readFramed(alice.peer, 20)
    expect(toAlice).toEqual(got.filter((m) => !m.d?.startsWith('a')))
    expect(await a.topics.position('t')).toEqual({ epoch, offset: 30 })
    expect(a.gaps).toEqual([])
    expect(b.gaps).toEqual([])
  })

  it('refuses history with a backplane that keeps none, whichever comes second', async () => {
    const plain: Backplane = {
      start() {},
      async subscribe() {},
      async unsubscribe() {},
      publish() {},
      async close() {},
    }
    const first = createHub().topics
    first.useHistory({ history: () => undefined })
    await expect(first.useBackplane(plain)).rejects.toThrow(/This backplane keeps no history/)
    const second = createHub().topics
    await second.useBackplane(plain)
    expect(() => second.useHistory({ history: () => undefined })).toThrow(
      /This backplane keeps no history: topics.useHistory\(\) needs a backplane that does/,
    )
  })
})

describe('no loss through the backplane’s faults', () => {
  it('fills messages dropped on the way from the history, in order, before newer ones, with no gap', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const b = await instance(bus.backplane())
    const watcher = await b.join('t')
    a.topics.publish('t', 'm1')
    bus.drop(3)
    for (let i = 2; i <= 8; i++) a.topics.publish('t', `m${i}`)
    const got = await readFramed(watcher.peer, 8)
    expect(offsets(got)).toEqual(range(1, 8))
    expect(got.map((m) => m.d)).toEqual(range(1, 8).map((i) => `m${i}`))
    expect(bus.counts).toEqual({ published: 8, dropped: 3 })
    expect(b.gaps).toEqual([])
  })

  it('tells every subscriber of what the history no longer holds: a gap event with the count, and the framed notice', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane(), () => ({ size: 2, ttl: 60_000 }))
    const b = await instance(bus.backplane(), () => ({ size: 2, ttl: 60_000 }))
    const watcher = await b.join('t')
    const other = await b.join('t')
    a.topics.publish('t', 'm1')
    bus.drop(5)
    for (let i = 2; i <= 7; i++) a.topics.publish('t', `m${i}`)
    const got = await readFramed(watcher.peer, 4)
    const epoch = got[0]?.e
    expect(got).toEqual([
      { t: 'm', e: epoch, o: 1, d: 'm1' },
      { t: 'g', e: epoch, o: 5, r: 'trimmed' },
      { t: 'm', e: epoch, o: 6, d: 'm6' },
      { t: 'm', e: epoch, o: 7, d: 'm7' },
    ])
    expect(await readFramed(other.peer, 4)).toEqual(got)
    expect(b.gaps).toHaveLength(1)
    expect(b.gaps[0]).toMatchObject({
      type: 'gap',
      topic: 't',
      position: { epoch, offset: 5 },
      reason: 'trimmed',
      lost: 4,
    })
  })

  it('after a cut subscription comes back, delivers what was published meanwhile before anything newer', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const b = await instance(bus.backplane())
    const watcher = await b.join('t')
    const restored = vi.fn()
    b.topics.addEventListener('restore', restored)
    a.topics.publish('t', 'm1')
    await settle()
    bus.cut(b.backplane)
    expect(b.onError).toHaveBeenCalledTimes(1)
    for (let i = 2; i <= 6; i++) a.topics.publish('t', `m${i}`)
    await settle()
    bus.restore(b.backplane)
    a.topics.publish('t', 'm7')
    const got = await readFramed(watcher.peer, 7)
    expect(got.map((m) => m.d)).toEqual(range(1, 7).map((i) => `m${i}`))
    expect(offsets(got)).toEqual(range(1, 7))
    await vi.waitFor(() => expect(restored).toHaveBeenCalledTimes(1))
    expect(b.gaps).toEqual([])
  })

  it('skips the sender of its own message read back from the history, when its live copy was lost', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const b = await instance(bus.backplane())
    const sender = await b.join('t')
    const other = await b.join('t')
    const onA = await a.join('t')
    bus.cut(b.backplane)
    sender.peer.send('mine')
    await vi.waitFor(() => expect(bus.counts.published).toBe(1))
    await settle()
    bus.restore(b.backplane)
    expect(await next(other.peer)).toMatchObject({ o: 1, d: 'mine' })
    expect(await next(onA.peer)).toMatchObject({ o: 1, d: 'mine' })
    a.topics.publish('t', 'next')
    // The sender's next message is the one after its own.
    expect(await next(sender.peer)).toMatchObject({ o: 2, d: 'next' })
  })

  it('reads after the last position when the backplane comes back, even with nothing newer published', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const b = await instance(bus.backplane())
    const watcher = await b.join('t')
    bus.cut(b.backplane)
    a.topics.publish('t', 'm1')
    a.topics.publish('t', 'm2')
    await settle()
    bus.restore(b.backplane)
    expect(offsets(await readFramed(watcher.peer, 2))).toEqual([1, 2])
  })

  it('tells of the epoch change when the history was lost, and goes on from the new epoch', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const b = await instance(bus.backplane())
    const watcher = await b.join('t')
    a.topics.publish('t', 'm1')
    const [first] = await readFramed(watcher.peer, 1)
    bus.reset()
    a.topics.publish('t', 'n1')
    a.topics.publish('t', 'n2')
    const got = await readFramed(watcher.peer, 3)
    const epoch = got[1]?.e
    expect(epoch).not.toBe(first?.e)
    expect(got).toEqual([
      { t: 'g', e: epoch, o: 0, r: 'epoch' },
      { t: 'm', e: epoch, o: 1, d: 'n1' },
      { t: 'm', e: epoch, o: 2, d: 'n2' },
    ])
    expect(b.gaps).toHaveLength(1)
    expect(b.gaps[0]).toMatchObject({
      reason: 'epoch',
      lost: undefined,
      position: { epoch, offset: 0 },
    })
  })
})

/** Wraps a backplane so that its history reads are answered only when let through. */
function holdingReads(inner: Backplane) {
  const history = inner.history as NonNullable<Backplane['history']>
  const control = {
    hold: false,
    fail: false,
    failPublish: false,
    /** Read when let through rather than when asked. */
    late: false,
    held: [] as (() => void)[],
    release() {
      const held = control.held
      control.held = []
      for (const resolve of held) resolve()
    },
  }
  const backplane: Backplane = {
    start: (sink) => inner.start(sink),
    subscribe: (topic) => inner.subscribe(topic),
    unsubscribe: (topic) => inner.unsubscribe(topic),
    publish: (topic, data, origin) => inner.publish(topic, data, origin),
    close: () => inner.close(),
    history: {
      publish: (topic, data, options, origin) => {
        if (control.failPublish) throw new Error('publish failed')
        history.publish(topic, data, options, origin)
      },
      async read(topic, since, limit) {
        if (control.fail) throw new Error('read failed')
        // Read now (or, late, when let through), answered later, as a store slow to answer.
        const read = control.late ? undefined : history.read(topic, since, limit)
        if (control.hold) await new Promise<void>((resolve) => control.held.push(resolve))
        return read ?? history.read(topic, since, limit)
      },
    },
  }
  return { backplane, control, inner }
}

describe('a topic’s first subscriber on a hub', () => {
  it('gets the messages that arrive while the topic’s latest position is being read', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const { backplane, control } = holdingReads(bus.backplane())
    const b = await instance(backplane)
    a.topics.publish('t', 'm0')
    control.hold = true
    control.late = true
    const joining = b.join('t')
    await vi.waitFor(() => expect(control.held).toHaveLength(1))
    a.topics.publish('t', 'm1')
    a.topics.publish('t', 'm2')
    await settle()
    control.release()
    const first = await joining
    expect(first.before.map((m) => m.d)).toEqual(['m1', 'm2'])
    expect(first.sub).toMatchObject({ position: { offset: 3 }, recovered: true })
  })
})

describe('recovery on subscribe, across hubs', () => {
  it('holds what is published during the read, and sends it after the missed messages, each once', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const { backplane, control } = holdingReads(bus.backplane())
    const b = await instance(backplane)
    const watcher = await b.join('t')
    for (let i = 1; i <= 10; i++) a.topics.publish('t', `m${i}`)
    const seen = await readFramed(watcher.peer, 10)
    control.hold = true
    const joining = b.join('t', { epoch: seen[0]?.e as string, offset: 3 })
    await vi.waitFor(() => expect(control.held).toHaveLength(1))
    for (let i = 11; i <= 15; i++) a.topics.publish('t', `m${i}`)
    await settle()
    control.release()
    const late = await joining
    expect(late.sub).toMatchObject({ position: { offset: 15 }, recovered: true })
    expect(offsets(late.before)).toEqual(range(4, 15))
    a.topics.publish('t', 'm16')
    expect(await next(late.peer)).toMatchObject({ o: 16 })
  })

  it('sends every missed message once, in order, while another hub keeps publishing', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const b = await instance(bus.backplane())
    const watcher = await b.join('t')
    for (let i = 1; i <= 20; i++) a.topics.publish('t', `m${i}`)
    const seen = await readFramed(watcher.peer, 20)
    const since = { epoch: seen[0]?.e as string, offset: 5 }
    // A publisher on the other hub that does not stop while the subscriber recovers.
    let publishing = true
    let sent = 20
    const publisher = (async () => {
      while (publishing) {
        a.topics.publish('t', `m${++sent}`)
        await Promise.resolve()
        if (sent % 3 === 0) await new Promise((resolve) => setTimeout(resolve, 0))
      }
    })()
    const late = await b.join('t', since)
    publishing = false
    await publisher
    expect(late.sub).toMatchObject({ recovered: true })
    const position = late.sub.position as Position
    const rest = await readFramed(late.peer, sent - position.offset)
    const all = [...late.before, ...rest]
    expect(offsets(all)).toEqual(range(6, sent))
    expect(all.map((m) => m.d)).toEqual(range(6, sent).map((i) => `m${i}`))
  })

  it('recovers a runtime-tree subscriber outside the tree, then joins it, with no message twice', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const b = await instance(bus.backplane())
    const tree = new TestTree()
    const watcher = await b.join('t', undefined, tree)
    for (let i = 1; i <= 5; i++) a.topics.publish('t', `m${i}`)
    const seen = await readFramed(watcher.peer, 5)
    const joining = b.join('t', { epoch: seen[0]?.e as string, offset: 2 }, tree)
    for (let i = 6; i <= 9; i++) a.topics.publish('t', `m${i}`)
    const late = await joining
    expect(late.sub).toMatchObject({ recovered: true })
    expect(tree.subscribed.get('t')?.size).toBe(2)
    a.topics.publish('t', 'm10')
    const position = late.sub.position as Position
    const all = [...late.before, ...(await readFramed(late.peer, 10 - position.offset))]
    expect(offsets(all)).toEqual(range(3, 10))
    expect(offsets(await readFramed(watcher.peer, 5))).toEqual(range(6, 10))
  })

  it('tells a subscriber whose since is of a lost epoch: the gap notice, then what the history holds', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const b = await instance(bus.backplane())
    a.topics.publish('t', 'old')
    const old = (await a.topics.position('t')) as Position
    bus.reset()
    a.topics.publish('t', 'new')
    const late = await b.join('t', old)
    const epoch = late.before[0]?.e
    expect(epoch).not.toBe(old.epoch)
    expect(late.before).toEqual([
      { t: 'g', e: epoch, o: 0, r: 'epoch' },
      { t: 'm', e: epoch, o: 1, d: 'new' },
    ])
    expect(late.sub).toEqual({ t: 'sub', position: { epoch, offset: 1 }, recovered: false })
  })

  it('holds a subscriber that is ahead of its hub until the hub catches up, so that nothing comes twice', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const b = await instance(bus.backplane())
    const onA = await a.join('t')
    const onB = await b.join('t')
    for (let i = 1; i <= 10; i++) a.topics.publish('t', `m${i}`)
    await readFramed(onB.peer, 10)
    // Hub B falls behind: its subscription is cut while A goes on.
    bus.cut(b.backplane)
    for (let i = 11; i <= 15; i++) a.topics.publish('t', `m${i}`)
    const seen = await readFramed(onA.peer, 15)
    const since = { epoch: seen[0]?.e as string, offset: 15 }
    // The client was on A up to 15, and comes back on B, which is at 10.
    const joining = b.join('t', since)
    await settle()
    bus.restore(b.backplane)
    const late = await joining
    expect(late.before).toEqual([])
    expect(late.sub).toEqual({ t: 'sub', position: since, recovered: true })
    a.topics.publish('t', 'm16')
    expect(await next(late.peer)).toMatchObject({ o: 16, d: 'm16' })
    expect(offsets(await readFramed(onB.peer, 6))).toEqual(range(11, 16))
  })

  it('answers a subscriber ahead of its hub on a quiet topic whose messages to the hub were lost', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const b = await instance(bus.backplane())
    const onB = await b.join('t')
    for (let i = 1; i <= 10; i++) a.topics.publish('t', `m${i}`)
    await readFramed(onB.peer, 10)
    // 11 to 15 never reach B live (the history keeps them); nothing is published after.
    bus.drop(5)
    for (let i = 11; i <= 15; i++) a.topics.publish('t', `m${i}`)
    // A client was given them on another instance, and comes back on B.
    const since = (await a.topics.position('t')) as Position
    expect(since.offset).toBe(15)
    // It failed before: B waited for a message that never came, and subscribe() never answered.
    const late = await b.join('t', since)
    expect(late.before).toEqual([])
    expect(late.sub).toEqual({ t: 'sub', position: since, recovered: true })
    // B's other subscriber is given what B missed, from the history.
    expect(offsets(await readFramed(onB.peer, 5))).toEqual(range(11, 15))
    a.topics.publish('t', 'm16')
    expect(await next(late.peer)).toMatchObject({ o: 16, d: 'm16' })
  })

  it('lets go of a subscriber that is ahead of its hub and leaves while it waits', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const b = await instance(bus.backplane())
    const onA = await a.join('t')
    const onB = await b.join('t')
    bus.cut(b.backplane)
    for (let i = 1; i <= 3; i++) a.topics.publish('t', `m${i}`)
    const seen = await readFramed(onA.peer, 3)
    let answer: unknown
    const app = new Hono().get(
      '/',
      upgrade({
        async serve(conn) {
          answer = await conn.subscribe('t', { since: { epoch: seen[2]?.e as string, offset: 3 } })
          await conn.send('recovered')
        },
      }),
    )
    const waiting = await connect(app, '/', { hub: b.hub })
    await vi.waitFor(() => expect(b.topics.subscribers('t')).toBe(2))
    waiting.cut()
    await vi.waitFor(() => expect(b.topics.subscribers('t')).toBe(1))
    // Its subscribe() settles at once, though the hub has not caught up.
    await vi.waitFor(() => expect(answer).toMatchObject({ recovered: false }))
    bus.restore(b.backplane)
    expect(offsets(await readFramed(onB.peer, 3))).toEqual([1, 2, 3])
    await expect(waiting.read()).rejects.toMatchObject({ code: 1006 })
  })

  it('takes a subscriber ahead of its hub to the new epoch when the history was lost, never back in the old one', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const b = await instance(bus.backplane())
    const onA = await a.join('t')
    const onB = await b.join('t')
    for (let i = 1; i <= 10; i++) a.topics.publish('t', `m${i}`)
    await readFramed(onB.peer, 10)
    bus.cut(b.backplane)
    for (let i = 11; i <= 15; i++) a.topics.publish('t', `m${i}`)
    const seen = await readFramed(onA.peer, 15)
    const old = seen[0]?.e as string
    // The client was on A up to 15; the history is lost; it comes back on B, which is at 10.
    bus.reset()
    const late = await b.join('t', { epoch: old, offset: 15 })
    const epoch = late.before[0]?.e
    expect(epoch).not.toBe(old)
    // It failed before: the gap took it back to 10 in the old epoch, so that 11 to 15, had
    // they still reached B, would have come twice.
    expect(late.before).toEqual([{ t: 'g', e: epoch, o: 0, r: 'epoch' }])
    expect(late.sub).toEqual({ t: 'sub', position: { epoch, offset: 0 }, recovered: false })
    // B moved with it: its other subscriber is told too, and both go on in the new epoch.
    expect(await next(onB.peer)).toEqual({ t: 'g', e: epoch, o: 0, r: 'epoch' })
    bus.restore(b.backplane)
    a.topics.publish('t', 'new')
    expect(await next(late.peer)).toEqual({ t: 'm', e: epoch, o: 1, d: 'new' })
    expect(await next(onB.peer)).toEqual({ t: 'm', e: epoch, o: 1, d: 'new' })
  })

  it('lets a subscriber ahead of its hub go on, not wait forever, when the hub cannot read the new epoch', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const { backplane, inner } = holdingReads(bus.backplane())
    // The latest position is read, but a read from a position fails (a store that just failed).
    const history = backplane.history as NonNullable<Backplane['history']>
    const read = history.read
    let failFrom = false
    let failed = 0
    history.read = async (topic, since, limit) => {
      if (failFrom && since) {
        failed++
        throw new Error('read failed')
      }
      return read(topic, since, limit)
    }
    const b = await instance(backplane)
    const onA = await a.join('t')
    const onB = await b.join('t')
    for (let i = 1; i <= 10; i++) a.topics.publish('t', `m${i}`)
    await readFramed(onB.peer, 10)
    bus.cut(inner)
    for (let i = 11; i <= 15; i++) a.topics.publish('t', `m${i}`)
    const seen = await readFramed(onA.peer, 15)
    const old = seen[0]?.e as string
    bus.reset()
    failFrom = true
    // It failed before: the hub's refill failed, nothing else made it move, and subscribe()
    // never answered (nothing published, the backplane not back).
    const late = await b.join('t', { epoch: old, offset: 15 })
    expect(failed).toBe(1)
    expect(late.before).toEqual([])
    expect(late.sub).toEqual({ t: 'sub', position: { epoch: old, offset: 15 }, recovered: false })
    // Once the history can be read again, the hub moves and both are told of the new epoch.
    failFrom = false
    bus.restore(inner)
    const gap = await next(late.peer)
    expect(gap).toMatchObject({ t: 'g', o: 0, r: 'epoch' })
    expect(gap.e).not.toBe(old)
    expect(await next(onB.peer)).toEqual(gap)
    a.topics.publish('t', 'new')
    expect(await next(late.peer)).toEqual({ t: 'm', e: gap.e, o: 1, d: 'new' })
  })

  it('sends a subscriber ahead of its hub nothing twice when the hub cannot read the new epoch and the old one’s messages come late', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const inner = bus.backplane()
    // B's pub/sub is slow: what reaches it waits while `held`.
    let held = false
    const waiting: (() => void)[] = []
    let failFrom = false
    const history = inner.history as NonNullable<Backplane['history']>
    const backplane: Backplane = {
      ...inner,
      start: (sink) =>
        inner.start({
          ...sink,
          message(topic, data, position, origin) {
            if (held) waiting.push(() => sink.message(topic, data, position, origin))
            else sink.message(topic, data, position, origin)
          },
        }),
      subscribe: (topic) => inner.subscribe(topic),
      unsubscribe: (topic) => inner.unsubscribe(topic),
      publish: (topic, data, origin) => inner.publish(topic, data, origin),
      close: () => inner.close(),
      history: {
        publish: (topic, data, options, origin) => history.publish(topic, data, options, origin),
        async read(topic, since, limit) {
          if (failFrom && since) throw new Error('read failed')
          return history.read(topic, since, limit)
        },
      },
    }
    const b = await instance(backplane)
    const onA = await a.join('t')
    const onB = await b.join('t')
    for (let i = 1; i <= 10; i++) a.topics.publish('t', `m${i}`)
    await readFramed(onB.peer, 10)
    held = true
    for (let i = 11; i <= 15; i++) a.topics.publish('t', `m${i}`)
    const seen = await readFramed(onA.peer, 15)
    const old = seen[0]?.e as string
    bus.reset()
    failFrom = true
    const late = await b.join('t', { epoch: old, offset: 15 })
    expect(late.sub).toEqual({ t: 'sub', position: { epoch: old, offset: 15 }, recovered: false })
    // 11 to 15 reach B now: its other subscriber gets them, the late one has them already.
    held = false
    for (const deliver of waiting.splice(0)) deliver()
    expect(offsets(await readFramed(onB.peer, 5))).toEqual(range(11, 15))
    failFrom = false
    a.topics.publish('t', 'new')
    // It failed with the first fix of the hang: the late one got 11 to 15 again.
    const gap = await next(late.peer)
    expect(gap).toMatchObject({ t: 'g', o: 0, r: 'epoch' })
    expect(gap.e).not.toBe(old)
    expect(await next(late.peer)).toEqual({ t: 'm', e: gap.e, o: 1, d: 'new' })
    expect(await next(onB.peer)).toEqual(gap)
  })

  it('tells a subscriber whose since is ahead of the history itself of an epoch gap', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    a.topics.publish('t', 'm1')
    const { epoch } = (await a.topics.position('t')) as Position
    const late = await a.join('t', { epoch, offset: 99 })
    expect(late.before).toEqual([{ t: 'g', e: epoch, o: 1, r: 'epoch' }])
    expect(late.sub).toEqual({ t: 'sub', position: { epoch, offset: 1 }, recovered: false })
  })
})

describe('when the history cannot be read or written', () => {
  it('a first subscriber starts without a position, and the next message tries again', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const { backplane, control } = holdingReads(bus.backplane())
    const b = await instance(backplane)
    a.topics.publish('t', 'm1')
    control.fail = true
    const watcher = await b.join('t')
    expect(watcher.sub).toEqual({ t: 'sub', recovered: true })
    expect(b.onError).toHaveBeenCalledWith(expect.objectContaining({ message: 'read failed' }))
    control.fail = false
    a.topics.publish('t', 'm2')
    a.topics.publish('t', 'm3')
    // Once read, it starts at the latest: m2 and m3 came after.
    const got = await readFramed(watcher.peer, 2)
    expect(got.map((m) => m.d)).toEqual(['m2', 'm3'])
    expect(offsets(got)).toEqual([2, 3])
  })

  it('holds what follows a gap while the history cannot be read, and fills it once the backplane is back', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const { backplane, control, inner } = holdingReads(bus.backplane())
    const b = await instance(backplane)
    const watcher = await b.join('t')
    a.topics.publish('t', 'm1')
    await readFramed(watcher.peer, 1)
    control.fail = true
    bus.drop(1)
    a.topics.publish('t', 'm2')
    a.topics.publish('t', 'm3')
    await settle()
    expect(b.onError).toHaveBeenCalledWith(expect.objectContaining({ message: 'read failed' }))
    // Nothing out of order meanwhile.
    a.topics.publish('t', 'm4')
    await settle()
    control.fail = false
    bus.cut(inner)
    bus.restore(inner)
    const got = await readFramed(watcher.peer, 3)
    expect(offsets(got)).toEqual([2, 3, 4])
    expect(b.gaps).toEqual([])
  })

  it(`tells of a gap, and delivers what it held, rather than hold more than ${MAX_HELD} messages while the history cannot be read`, async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const { backplane, control } = holdingReads(bus.backplane())
    const b = await instance(backplane)
    const watcher = await b.join('t')
    a.topics.publish('t', 'm1')
    await readFramed(watcher.peer, 1)
    control.fail = true
    bus.drop(1)
    const total = MAX_HELD + 3
    for (let i = 2; i <= total; i++) a.topics.publish('t', `m${i}`)
    const first = await readFramed(watcher.peer, 2)
    expect(first).toEqual([
      { t: 'g', e: expect.any(String), o: 2, r: 'trimmed' },
      { t: 'm', e: expect.any(String), o: 3, d: 'm3' },
    ])
    const rest = await readFramed(watcher.peer, total - 3)
    expect(offsets(rest)).toEqual(range(4, total))
    expect(b.gaps).toHaveLength(1)
    expect(b.gaps[0]).toMatchObject({ reason: 'trimmed', lost: 1, position: { offset: 2 } })
  })

  it('reports a history publish that throws, and does not throw into publish()', async () => {
    const bus = memoryBackplane()
    const { backplane, control } = holdingReads(bus.backplane())
    const b = await instance(backplane)
    control.failPublish = true
    expect(() => b.topics.publish('t', 'm1')).not.toThrow()
    expect(b.onError).toHaveBeenCalledWith(expect.objectContaining({ message: 'publish failed' }))
  })

  it('starts positions from the backplane’s history for the topics held before it was given', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const hub = createHub()
    hub.topics.useHistory({ history: () => ({ size: 10, ttl: 60_000 }), frame })
    const app = new Hono().get(
      '/',
      upgrade({
        async serve(conn) {
          await conn.subscribe('t')
          await conn.send('joined')
          await conn.read()
        },
      }),
    )
    const peer = await connect(app, '/', { hub })
    expect((await peer.read()).data).toBe('joined')
    hub.topics.publish('t', 'local')
    expect(await next(peer)).toMatchObject({ o: 1, d: 'local' })
    a.topics.publish('t', 'x1')
    a.topics.publish('t', 'x2')
    await hub.topics.useBackplane(bus.backplane())
    await settle()
    a.topics.publish('t', 'x3')
    const x3 = await next(peer)
    expect(x3).toMatchObject({ o: 3, d: 'x3' })
    expect(x3.e).toBe((await a.topics.position('t'))?.epoch)
  })
})
