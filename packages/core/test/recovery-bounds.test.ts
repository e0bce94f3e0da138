/**
 * A recovering subscriber's bounds (issue 20's review): what it buffers while the history read
 * hangs, and what a subscriber that leaves mid-recovery leaves behind.
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { describe, expect, it, vi } from 'vitest'
import type { HistoryRead } from '../src/adapter.js'
import type { Position } from '../src/index.js'
import { DELIVER } from '../src/internal.js'
import { MAX_RECOVERY_BUFFER, Sequencer, type SequencerHost } from '../src/sequencer.js'
import type { Subscriber } from '../src/subscriber.js'
import { frameOffsets, historyHub, stubBackplane, subscriber } from './framed.js'

const E = 'b'.repeat(16)

/** Rejects when `promise` is not settled within `ms`: the test fails instead of timing out. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(what)), ms)),
  ])
}

/** A backplane whose history gives the latest position (5) but never answers a recovery read. */
function hangingBackplane() {
  const state = { recoveryReads: 0 }
  const stub = stubBackplane((_topic, since) => {
    if (since === undefined) {
      return Promise.resolve({ epoch: E, offset: 5, messages: [], complete: true })
    }
    state.recoveryReads++
    return new Promise<HistoryRead>(() => {})
  })
  return { ...stub, state }
}

describe('a recovery whose history read hangs while pub/sub keeps delivering', () => {
  // It failed before: the buffer grew with every message and subscribe() never resolved.
  it(`buffers at most ${MAX_RECOVERY_BUFFER} messages, then tells a gap and goes live`, async () => {
    const { backplane, sink: started, state } = hangingBackplane()
    const hub = await historyHub(backplane)
    const peer = await subscriber(hub, { epoch: E, offset: 2 })
    await vi.waitFor(() => expect(state.recoveryReads).toBe(1))
    const sink = started()
    const last = 5 + MAX_RECOVERY_BUFFER + 1
    for (let offset = 6; offset <= last; offset++)
      sink.message('t', `m${offset}`, { epoch: E, offset })
    const next = async () =>
      JSON.parse((await within(peer.read(), 2000, 'no frame came')).data as string)
    // Told what it lost (the history read never came back), then subscribed, not recovered.
    expect(await next()).toEqual({ t: 'g', o: last, r: 'trimmed' })
    expect(await next()).toEqual({
      t: 'sub',
      position: { epoch: E, offset: last },
      recovered: false,
    })
    // Live from there, each message once.
    sink.message('t', 'after', { epoch: E, offset: last + 1 })
    expect(await next()).toEqual({ t: 'm', o: last + 1, d: 'after' })
    expect(hub.topics.subscribers('t')).toBe(1)
    peer.close()
  })

  it('keeps buffering up to the bound, and recovers in full when the read then comes back', async () => {
    let answer: ((read: HistoryRead) => void) | undefined
    const { backplane, sink } = stubBackplane((_topic, since) =>
      since === undefined
        ? Promise.resolve({ epoch: E, offset: 5, messages: [], complete: true })
        : new Promise((resolve) => {
            answer = resolve
          }),
    )
    const hub = await historyHub(backplane)
    const peer = await subscriber(hub, { epoch: E, offset: 3 })
    await vi.waitFor(() => expect(answer).toBeDefined())
    const last = 5 + MAX_RECOVERY_BUFFER
    for (let offset = 6; offset <= last; offset++)
      sink().message('t', `m${offset}`, { epoch: E, offset })
    answer?.({
      epoch: E,
      offset: 5,
      messages: [
        { offset: 4, data: 'm4' },
        { offset: 5, data: 'm5' },
      ],
      complete: true,
    })
    const offsets: number[] = []
    for (;;) {
      const item = JSON.parse((await within(peer.read(), 2000, 'no frame came')).data as string)
      if (item.t === 'sub') {
        expect(item).toEqual({ t: 'sub', position: { epoch: E, offset: last }, recovered: true })
        break
      }
      expect(item.t).toBe('m')
      offsets.push(item.o)
    }
    expect(offsets).toEqual(Array.from({ length: last - 3 }, (_, i) => i + 4))
    peer.close()
  })
})

// Live memory needs a collection first.
setFlagsFromString('--expose-gc')
const collect = runInNewContext('gc') as () => void

describe('a subscriber that leaves while it waits for its hub to catch up', () => {
  // It failed before: leave() resolved the wait but kept the entry, and with it the connection,
  // until the hub reached the position the subscriber had come from.
  it('is let go at once, and its subscribe() answers not recovered', async () => {
    const host: SequencerHost = {
      fanOut: () => {},
      frame: frameOffsets,
      raw: false,
      // The history is ahead of this hub (at 9), which is at 5.
      read: (since) => ({ epoch: E, offset: since ? 9 : 9, messages: [], complete: true }),
      gap: () => {},
      fault: () => {},
      joinLive: () => {},
    }
    const sequencer = new Sequencer('t', host, Promise.resolve())
    await sequencer.ready
    sequencer.last = { epoch: E, offset: 5 }
    let subscriber: Subscriber | undefined = {
      [DELIVER]: () => {},
    } as unknown as Subscriber
    const gone = new WeakRef(subscriber)
    const answer = sequencer.recover(subscriber, { epoch: E, offset: 8 } satisfies Position)
    // It waits for this hub to reach 8.
    await new Promise((resolve) => setTimeout(resolve, 10))
    expect(sequencer.recovering?.size).toBe(1)
    expect(sequencer.leave(subscriber)).toBe(true)
    expect(await within(answer, 1000, 'subscribe() never answered')).toEqual({
      position: { epoch: E, offset: 8 },
      recovered: false,
    })
    subscriber = undefined
    // Twice: an object made while the collector was already marking survives that collection.
    for (let i = 0; i < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10))
      collect()
    }
    expect(gone.deref()).toBeUndefined()
  })
})
