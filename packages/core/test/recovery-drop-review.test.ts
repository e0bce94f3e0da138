/**
 * The review of recovery under the publish bound (d0a38ca): what the gap notice owed when a
 * recovery goes live does to a subscriber with `slowSubscriber: 'close'`, and how often a
 * notice owed across a run of drops is framed.
 */
import { Hono } from 'hono'
import { describe, expect, it } from 'vitest'
import { createHub } from '../src/adapter.js'
import { type Conn, type Delivery, upgrade } from '../src/index.js'
import { Sequencer } from '../src/sequencer.js'
import { connect } from '../src/testing.js'
import { droppingSubscriber, frameAsJson, frameOffsets, recoveryHost } from './framed.js'

const quiet = { error: () => {} }

describe("a recovery's gap notice to a subscriber past the bound, with slowSubscriber 'close'", () => {
  it('closes it with 1008, as every other delivery past the bound does', async () => {
    const hub = createHub({ logger: quiet })
    hub.topics.useHistory({ history: () => ({ size: 100, ttl: 60_000 }), frame: frameAsJson })
    for (let i = 1; i <= 5; i++) hub.topics.publish('t', `m${i}`)
    const epoch = (await hub.topics.position('t'))?.epoch as string
    const conns: Conn[] = []
    const app = new Hono()
    app.get(
      '/',
      upgrade(
        {
          async serve(conn) {
            conns.push(conn)
            for await (const msg of conn) {
              // The socket is past the bound before the recovery's delivery.
              void conn.send('x'.repeat(4096))
              await conn.subscribe('t', { since: JSON.parse(msg.data as string) })
            }
          },
        },
        { logger: quiet, maxPublishBuffer: 1024, slowSubscriber: 'close' },
      ),
    )
    const peer = await connect(app, '/', { hub })
    peer.stopReading()
    // Ahead of anything the history confirms: the recovery owes a gap notice and nothing else.
    peer.send(JSON.stringify({ epoch, offset: 999 }))
    await expect.poll(() => conns[0]?.state).not.toBe('open')
    expect((await peer.closeFrame).code).toBe(1008)
  })
})

describe('a gap notice owed across a run of drops', () => {
  it('is framed once, when it goes out, not once per dropped message', async () => {
    const E = 'c'.repeat(16)
    const gapsFramed: Delivery[] = []
    const host = recoveryHost(E, 8, (delivery) => {
      if (delivery.type === 'gap') gapsFramed.push(delivery)
      return frameOffsets(delivery)
    })
    const sequencer = new Sequencer('t', host, Promise.resolve())
    await sequencer.ready
    // Its socket is over the bound from m2 to m7: six drops, then m8 goes out.
    const { subscriber, sent } = droppingSubscriber(
      (m) => (m.o as number) >= 2 && (m.o as number) <= 7,
    )
    const answer = await sequencer.recover(subscriber, { epoch: E, offset: 0 })
    expect(sent).toEqual([
      { t: 'm', o: 1, d: 'm1' },
      { t: 'g', o: 7, r: 'trimmed' },
      { t: 'm', o: 8, d: 'm8' },
    ])
    expect(answer).toEqual({ position: { epoch: E, offset: 8 }, recovered: false })
    // The app's frame saw the one notice that went out (it was called for each drop after m2).
    expect(gapsFramed).toEqual([
      { type: 'gap', topic: 't', position: { epoch: E, offset: 7 }, reason: 'trimmed' },
    ])
  })
})
