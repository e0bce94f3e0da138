/**
 * SPEC "Round 3 / Positions, history and recovery": a client that comes back with the position
 * of the last message it got receives exactly the ones it missed, in order, once, then the new
 * ones; with a position of another epoch it is told of the gap. On the `serve` form and the
 * event form of `/history`, with messages published from an HTTP route.
 * @module
 */
import { describe, expect, it } from 'vitest'
import { EVENTS_PREFIX, HISTORY_TOPIC_PREFIX } from '../app.js'
import type { Peer } from '../peers.js'
import { closedWithin, type HarnessRef, newId, readText } from './support.js'

interface Position {
  epoch: string
  offset: number
}

/** What `/history` sends: a delivery framed as JSON, or the subscription's answer. */
interface Received {
  type: 'message' | 'gap' | 'subscribed'
  topic?: string
  data?: string
  position?: Position
  reason?: string
  recovered?: boolean
}

async function receive(peer: Peer): Promise<Received> {
  return JSON.parse(await readText(peer)) as Received
}

/** Reads until the subscription's answer: what came before it, and the answer. */
async function subscribed(peer: Peer): Promise<{ before: Received[]; answer: Received }> {
  const before: Received[] = []
  for (;;) {
    const item = await receive(peer)
    if (item.type === 'subscribed') return { before, answer: item }
    before.push(item)
  }
}

export function historyScenarios(harness: HarnessRef): void {
  const publish = async (topic: string, data: string) => {
    const response = await harness().fetch(`/publish/${topic}`, {
      method: 'POST',
      body: data,
      headers: { 'content-type': 'text/plain' },
    })
    expect(response.status).toBe(200)
  }
  const dial = (prefix: string, topic: string, since?: Position) =>
    harness().dial(
      `${prefix}/history?topic=${topic}${since ? `&epoch=${since.epoch}&offset=${since.offset}` : ''}`,
    )

  for (const [form, prefix] of [
    ['serve', ''],
    ['event', EVENTS_PREFIX],
  ] as const) {
    describe(`the ${form} form`, () => {
      it('recovers exactly the messages missed while away, in order, once, then goes live', async () => {
        const topic = `${HISTORY_TOPIC_PREFIX}${newId(form)}`
        const first = await dial(prefix, topic)
        const { before, answer } = await subscribed(first)
        expect(before).toEqual([])
        expect(answer).toMatchObject({ recovered: true, position: { offset: 0 } })
        const epoch = answer.position?.epoch as string
        for (const data of ['m1', 'm2', 'm3']) await publish(topic, data)
        const got = [await receive(first), await receive(first), await receive(first)]
        expect(got).toEqual(
          [1, 2, 3].map((offset) => ({
            type: 'message',
            topic,
            data: `m${offset}`,
            position: { epoch, offset },
          })),
        )
        // The client goes away with the position of the last message it got.
        const last = got[2]?.position as Position
        first.close(1000)
        await closedWithin(first)
        for (const data of ['m4', 'm5', 'm6']) await publish(topic, data)
        const second = await dial(prefix, topic, last)
        const again = await subscribed(second)
        expect(again.before.map((m) => [m.position?.offset, m.data])).toEqual([
          [4, 'm4'],
          [5, 'm5'],
          [6, 'm6'],
        ])
        expect(again.answer).toEqual({
          type: 'subscribed',
          position: { epoch, offset: 6 },
          recovered: true,
        })
        await publish(topic, 'm7')
        // Nothing else came first: no message twice.
        expect(await receive(second)).toMatchObject({ data: 'm7', position: { epoch, offset: 7 } })
        second.close(1000)
        await closedWithin(second)
      })

      it('tells a client whose position is of another epoch of the gap, then sends what is kept', async () => {
        const topic = `${HISTORY_TOPIC_PREFIX}${newId(form)}`
        const first = await dial(prefix, topic)
        const { answer } = await subscribed(first)
        const epoch = answer.position?.epoch as string
        await publish(topic, 'kept')
        await receive(first)
        const stranger = await dial(prefix, topic, { epoch: 'lost-epoch', offset: 9 })
        const { before, answer: recovery } = await subscribed(stranger)
        expect(before).toEqual([
          { type: 'gap', topic, position: { epoch, offset: 0 }, reason: 'epoch' },
          { type: 'message', topic, data: 'kept', position: { epoch, offset: 1 } },
        ])
        expect(recovery).toEqual({
          type: 'subscribed',
          position: { epoch, offset: 1 },
          recovered: false,
        })
        first.close(1000)
        stranger.close(1000)
        await closedWithin(first)
        await closedWithin(stranger)
      })
    })
  }
}
