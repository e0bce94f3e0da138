/**
 * A backplane has one owner: a `Topics` whose `useBackplane()` failed keeps no hold on the
 * backplane, so that it cannot subscribe, unsubscribe or publish on another `Topics`' behalf.
 */
import { describe, expect, it, vi } from 'vitest'
import type { Backplane, BackplaneSink } from '../src/adapter.js'
import { type MessageData, Topics } from '../src/index.js'
import {
  CHECK_BACKLOG,
  DELIVER,
  ENTER_TREE,
  JOIN,
  LEAVE,
  PUBLISH_NATIVE,
  TREE,
} from '../src/internal.js'

/** A backplane that takes one owner, as @handshake/redis's does, and records its calls. */
class OneOwner implements Backplane {
  readonly calls: string[] = []
  #sink: BackplaneSink | undefined
  get sink(): BackplaneSink {
    return this.#sink as BackplaneSink
  }
  async start(sink: BackplaneSink): Promise<void> {
    if (this.#sink) throw new Error('This backplane is started already: give it to one Topics')
    this.#sink = sink
  }
  async subscribe(topic: string): Promise<void> {
    this.calls.push(`subscribe ${topic}`)
  }
  async unsubscribe(topic: string): Promise<void> {
    this.calls.push(`unsubscribe ${topic}`)
  }
  publish(topic: string, _data: MessageData): void {
    this.calls.push(`publish ${topic}`)
  }
  async close(): Promise<void> {
    this.calls.push('close')
  }
}

// A subscriber as the core sees one (a Conn), through the core's own keys.
const member = {
  [DELIVER]: () => true,
  [TREE]: undefined,
  [PUBLISH_NATIVE]() {},
  [CHECK_BACKLOG]() {},
  [ENTER_TREE]() {},
}

describe('a Topics whose useBackplane() failed', () => {
  it('keeps no hold on the backplane: the owner’s subscriptions stay, and it can try another', async () => {
    const backplane = new OneOwner()
    const owner = new Topics()
    await owner.useBackplane(backplane)
    await owner[JOIN]('room', { ...member })
    const other = new Topics()
    await expect(other.useBackplane(backplane)).rejects.toThrow(/started already/)
    // The other Topics' room and its leave are its own business, not the owner's backplane's.
    const guest = { ...member }
    await other[JOIN]('room', guest)
    other[LEAVE]('room', guest)
    other.publish('room', 'm')
    await other.closeBackplane()
    expect(backplane.calls).toEqual(['subscribe room'])
    // And it can still be given a backplane of its own.
    const own = new OneOwner()
    await other.useBackplane(own)
    other.publish('room', 'm')
    expect(own.calls).toEqual(['publish room'])
  })
})

describe('a backplane closed with closeBackplane()', () => {
  it('no longer speaks for the Topics, and the next backplane’s outage is reported', async () => {
    const onError = vi.fn()
    const topics = new Topics({ onError })
    const restores = vi.fn()
    topics.addEventListener('restore', restores)
    const delivered: MessageData[] = []
    await topics[JOIN]('room', {
      ...member,
      [DELIVER]: (data: MessageData) => delivered.push(data) > 0,
    })
    const old = new OneOwner()
    await topics.useBackplane(old)
    const first = new Error('first outage')
    old.sink.down(first)
    // Closed during its outage (a shutdown, a switch to another engine).
    await topics.closeBackplane()
    const next = new OneOwner()
    await topics.useBackplane(next)
    const second = new Error('second outage')
    next.sink.down(second)
    expect(onError.mock.calls).toEqual([[first], [second]])
    // What the closed one still says (a message its client had buffered, its restore ending)
    // reaches nobody and restores nothing.
    old.sink.message('room', 'late')
    old.sink.up()
    old.sink.down(new Error('after its close'))
    expect(delivered).toEqual([])
    expect(restores).not.toHaveBeenCalled()
    expect(onError).toHaveBeenCalledTimes(2)
    next.sink.up()
    expect(restores).toHaveBeenCalledTimes(1)
  })
})
