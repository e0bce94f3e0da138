/**
 * A backplane has one owner: a `Topics` whose `useBackplane()` failed keeps no hold on the
 * backplane, so that it cannot subscribe, unsubscribe or publish on another `Topics`' behalf.
 */
import { describe, expect, it } from 'vitest'
import type { Backplane, BackplaneSink } from '../src/adapter.js'
import { type MessageData, Topics } from '../src/index.js'
import { CHECK_BACKLOG, DELIVER, JOIN, LEAVE, PUBLISH_NATIVE, TREE } from '../src/internal.js'

/** A backplane that takes one owner, as @handshake/redis's does, and records its calls. */
class OneOwner implements Backplane {
  readonly calls: string[] = []
  #sink: BackplaneSink | undefined
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
  [DELIVER]() {},
  [TREE]: undefined,
  [PUBLISH_NATIVE]() {},
  [CHECK_BACKLOG]() {},
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
