/**
 * A recovering subscriber with `slowSubscriber: 'drop'` (issue 20's review): what its missed
 * messages lose to the publish bound is told, as every other loss within the window is.
 */
import { Hono } from 'hono'
import { describe, expect, it } from 'vitest'
import { createHub } from '../src/adapter.js'
import { type Conn, upgrade } from '../src/index.js'
import { Sequencer } from '../src/sequencer.js'
import { connect } from '../src/testing.js'
import {
  droppingSubscriber,
  frameAsJson,
  next,
  offsets,
  range,
  recoveryHost,
  untilSubscribed,
} from './framed.js'

const quiet = { error: () => {} }

/**
 * A hub that keeps `t`'s history, and an app that subscribes to `t` from the position the peer
 * sends (so that the peer can stop reading first), then sends `{ t: 'sub', ...subscription }`.
 */
function slowRecoveryApp() {
  const hub = createHub({ logger: quiet })
  hub.topics.useHistory({ history: () => ({ size: 1000, ttl: 60_000 }), frame: frameAsJson })
  const conns: Conn[] = []
  const app = new Hono()
  app.get(
    '/',
    upgrade(
      {
        async serve(conn) {
          conns.push(conn)
          for await (const msg of conn) {
            const since = JSON.parse(msg.data as string)
            const subscription = await conn.subscribe('t', { since })
            await conn.send(JSON.stringify({ t: 'sub', ...subscription }))
          }
        },
      },
      { logger: quiet, maxPublishBuffer: 1024, slowSubscriber: 'drop' },
    ),
  )
  return { hub, app, conns }
}

describe("a recovering subscriber whose missed messages are dropped ('drop')", () => {
  // It failed before: the drops were counted, but no gap notice came and subscribe() answered
  // recovered: true, a silent gap.
  it('is told a gap at the last message it lost, and subscribe() answers recovered: false', async () => {
    const { hub, app, conns } = slowRecoveryApp()
    const body = 'x'.repeat(100)
    for (let i = 1; i <= 50; i++) hub.topics.publish('t', `${i}:${body}`)
    const epoch = (await hub.topics.position('t'))?.epoch as string
    const peer = await connect(app, '/', { hub })
    peer.stopReading()
    peer.send(JSON.stringify({ epoch, offset: 0 }))
    // The backlog (50 messages of over 100 bytes) is far past the 1 KiB bound.
    await expect.poll(() => conns[0]?.droppedMessages ?? 0).toBeGreaterThan(30)
    peer.startReading()
    const { before, sub } = await untilSubscribed(peer)
    const kept = 50 - (conns[0] as Conn).droppedMessages
    expect(offsets(before)).toEqual([...range(1, kept), 'gap50'])
    expect(before.at(-1)).toEqual({ t: 'g', e: epoch, o: 50, r: 'trimmed' })
    expect(sub).toEqual({ t: 'sub', position: { epoch, offset: 50 }, recovered: false })
    // Live from there.
    hub.topics.publish('t', 'after')
    expect(await next(peer)).toEqual({ t: 'm', e: epoch, o: 51, d: 'after' })
  })

  it('recovers in full, recovered: true, when the backlog fits the bound', async () => {
    const { hub, app, conns } = slowRecoveryApp()
    for (let i = 1; i <= 5; i++) hub.topics.publish('t', `m${i}`)
    const epoch = (await hub.topics.position('t'))?.epoch as string
    const peer = await connect(app, '/', { hub })
    peer.stopReading()
    peer.send(JSON.stringify({ epoch, offset: 0 }))
    await expect.poll(() => conns[0]?.bufferedAmount ?? 0).toBeGreaterThan(0)
    peer.startReading()
    const { before, sub } = await untilSubscribed(peer)
    expect(offsets(before)).toEqual(range(1, 5))
    expect(sub).toEqual({ t: 'sub', position: { epoch, offset: 5 }, recovered: true })
    expect(conns[0]?.droppedMessages).toBe(0)
  })
})

describe('a recovery whose subscriber drains between its drops', () => {
  it('sends the gap notice just before the next message that goes out, once per run of drops', async () => {
    const E = 'c'.repeat(16)
    const host = recoveryHost(E, 6)
    const sequencer = new Sequencer('t', host, Promise.resolve())
    await sequencer.ready
    // Its socket is over the bound for m2 and m3, and again for m6, the last one.
    const full = new Set(['m2', 'm3', 'm6'])
    const { subscriber, sent } = droppingSubscriber((message) => full.has(message.d as string))
    const answer = await sequencer.recover(subscriber, { epoch: E, offset: 0 })
    expect(sent).toEqual([
      { t: 'm', o: 1, d: 'm1' },
      { t: 'g', o: 3, r: 'trimmed' },
      { t: 'm', o: 4, d: 'm4' },
      { t: 'm', o: 5, d: 'm5' },
      // Owed when it goes live: sent past the bound.
      { t: 'g', o: 6, r: 'trimmed' },
    ])
    expect(answer).toEqual({ position: { epoch: E, offset: 6 }, recovered: false })
  })
})
