/**
 * Recovery edge cases found in review (issue 20): a recovering subscriber's own publish, and the
 * memory store's growth from reads alone.
 */
import { Hono } from 'hono'
import { describe, expect, it, vi } from 'vitest'
import { createHub, type HistoryRead } from '../src/adapter.js'
import { MemoryHistory } from '../src/history.js'
import { type Position, upgrade } from '../src/index.js'
import { connect } from '../src/testing.js'
import { frameOffsets, historyHub, stubBackplane, subscriber } from './framed.js'

const quiet = { error: vi.fn() }

const frame = frameOffsets

describe('a recovering subscriber that publishes at once', () => {
  it('is not sent its own message back by the recovery (memory store)', async () => {
    const hub = createHub({ logger: quiet })
    hub.topics.useHistory({ history: () => ({ size: 100, ttl: 60_000 }), frame })
    for (const data of ['a', 'b']) hub.topics.publish('t', data)
    const since = (await hub.topics.position('t')) as Position
    hub.topics.publish('t', 'c')
    const app = new Hono()
    app.get(
      '/',
      upgrade(
        {
          async serve(conn) {
            // Subscribes from `since` and publishes in the same turn, without awaiting.
            const subscribed = conn.subscribe('t', { since })
            conn.publish('t', 'mine')
            const subscription = await subscribed
            await conn.send(JSON.stringify({ t: 'sub', ...subscription }))
            for await (const _ of conn);
          },
        },
        { logger: quiet },
      ),
    )
    const peer = await connect(app, '/', { hub })
    const got: { t: string; d?: string; o?: number }[] = []
    for (;;) {
      const item = JSON.parse((await peer.read()).data as string)
      if (item.t === 'sub') break
      got.push(item)
    }
    // What it missed (c), never its own message.
    expect(got.map((item) => item.d)).toEqual(['c'])
    hub.topics.publish('t', 'd')
    expect(JSON.parse((await peer.read()).data as string)).toMatchObject({ o: 5, d: 'd' })
    peer.close()
  })
})

describe('the memory history read before any publish', () => {
  it('drops the expired histories that reads made, without a publish', () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    try {
      const store = new MemoryHistory(() => ({ size: 5, ttl: 100 }))
      for (let i = 0; i < 1000; i++) store.read(`room:${i}`, undefined, 0)
      expect(store.size).toBe(1000)
      vi.setSystemTime(Date.now() + 2000)
      // Only reads from here on (subscribers joining rooms nobody publishes to).
      store.read('room:new', undefined, 0)
      expect(store.size).toBe(1)
    } finally {
      vi.useRealTimers()
    }
  })
})

describe('a second subscribe while the first one recovers', () => {
  it('answers where the connection is once its recovery is done, not the hub’s position ahead of it', async () => {
    const hub = createHub({ logger: quiet })
    hub.topics.useHistory({ history: () => ({ size: 100, ttl: 60_000 }), frame })
    hub.topics.publish('t', 'a')
    const since = (await hub.topics.position('t')) as Position
    for (const data of ['b', 'c', 'd']) hub.topics.publish('t', data)
    const app = new Hono()
    app.get(
      '/',
      upgrade(
        {
          async serve(conn) {
            void conn.subscribe('t', { since })
            // An app (a channel's duplicate subscribe frame) asks again at once.
            const second = await conn.subscribe('t')
            await conn.send(JSON.stringify({ t: 'sub', ...second }))
            for await (const _ of conn);
          },
        },
        { logger: quiet },
      ),
    )
    const peer = await connect(app, '/', { hub })
    const before: number[] = []
    let answer: { position?: Position }
    for (;;) {
      const item = JSON.parse((await peer.read()).data as string)
      if (item.t === 'sub') {
        answer = item
        break
      }
      before.push(item.o)
    }
    // The position it answers is that of the last message the connection was given.
    expect(answer.position?.offset).toBe(before.at(-1) ?? since.offset)
    expect(before).toEqual([2, 3, 4])
    peer.close()
  })
})

describe('a gap filled while the own copy of a message is held', () => {
  it('skips the sender of a message the read gives without its origin but whose held copy has it', async () => {
    const E = 'e'.repeat(16)
    let answer: ((read: HistoryRead) => void) | undefined
    const { backplane, sink } = stubBackplane((_topic, since) =>
      since === undefined
        ? Promise.resolve({ epoch: E, offset: 0, messages: [], complete: true })
        : new Promise((resolve) => {
            answer = resolve
          }),
    )
    let sender: object | undefined
    const peer = await subscriber(await historyHub(backplane), undefined, (conn) => {
      sender = conn
    })
    expect(JSON.parse((await peer.read()).data as string)).toMatchObject({ t: 'sub' })
    // Another instance's message 2 comes first: a jump, filled from the history.
    sink().message('t', 'theirs', { epoch: E, offset: 2 })
    // Its own message 1 comes back while the read is on its way: held, with its sender.
    sink().message('t', 'mine', { epoch: E, offset: 1 }, sender)
    // The history gives message 1 without its origin (the backplane no longer needs it).
    answer?.({
      epoch: E,
      offset: 2,
      messages: [
        { offset: 1, data: 'mine' },
        { offset: 2, data: 'theirs' },
      ],
      complete: true,
    })
    expect(JSON.parse((await peer.read()).data as string)).toMatchObject({ o: 2, d: 'theirs' })
    peer.close()
  })
})

describe('the backplane comes back while the first position is read', () => {
  it('reads what was published during the outage once the position is known', async () => {
    const E = 'f'.repeat(16)
    const reads: (Position | undefined)[] = []
    let first: ((read: HistoryRead) => void) | undefined
    const { backplane, sink } = stubBackplane((_topic, since) => {
      reads.push(since)
      if (since === undefined) {
        return new Promise((resolve) => {
          first = resolve
        })
      }
      return Promise.resolve({
        epoch: E,
        offset: 1,
        messages: [{ offset: 1, data: 'during' }],
        complete: true,
      })
    })
    const peer = await subscriber(await historyHub(backplane))
    await vi.waitFor(() => expect(first).toBeDefined())
    // An outage ends while the first read is on its way (answered from before the outage).
    sink().down(new Error('lost'))
    sink().up()
    first?.({ epoch: E, offset: 0, messages: [], complete: true })
    // What was published during the outage is read and delivered, with no newer message to
    // show the jump (before or after the app's answer, which goes its own way).
    const got = [await peer.read(), await peer.read()].map((m) => JSON.parse(m.data as string))
    expect(got.filter((item) => item.t === 'm')).toEqual([{ t: 'm', o: 1, d: 'during' }])
    expect(reads).toEqual([undefined, { epoch: E, offset: 0 }])
    peer.close()
  }, 10_000)
})
