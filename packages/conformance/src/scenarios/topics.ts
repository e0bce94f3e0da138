/**
 * SPEC "Round 2 / Topics": fan-out between real clients, order, no duplicates, text and bytes,
 * leaving on close, publishes from HTTP routes and from event controllers, and the bound on a
 * subscriber that cannot keep up.
 * @module
 */
import { describe, expect, it } from 'vitest'
import type { Peer } from '../peers.js'
import { BURST_MESSAGE_BYTES, MAX_BURST_MESSAGES, SMALL_PUBLISH_BUFFER } from '../topics-app.js'
import {
  closedWithin,
  expectText,
  type HarnessRef,
  newId,
  patternBytes,
  readBinary,
  readText,
  waitForReport,
  withId,
} from './support.js'

/** Connects to a room route and waits until its subscription counts. */
async function join(harness: HarnessRef, route: string, topic: string, id = newId(route)) {
  const peer = await harness().dial(withId(`/${route}/${topic}`, id))
  await expectText(peer, 'joined')
  return peer
}

async function subscribers(harness: HarnessRef, topic: string): Promise<number> {
  const response = await harness().fetch(`/subscribers/${topic}`)
  return ((await response.json()) as { subscribers: number }).subscribers
}

/** Polls the local subscriber count of `topic` until it is `count`. */
async function waitForSubscribers(harness: HarnessRef, topic: string, count: number) {
  const deadline = Date.now() + 8000
  let last = -1
  while (Date.now() < deadline) {
    last = await subscribers(harness, topic)
    if (last === count) return
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  throw new Error(`The topic ${topic} has ${last} subscribers, not ${count}`)
}

/** Publishes from outside any connection through `POST /publish/:topic`. */
async function publish(harness: HarnessRef, topic: string, data: string | Uint8Array) {
  const response = await harness().fetch(`/publish/${topic}`, {
    method: 'POST',
    body: data as BodyInit,
    headers: {
      'content-type': typeof data === 'string' ? 'text/plain' : 'application/octet-stream',
    },
  })
  expect(response.status).toBe(200)
  return (await response.json()) as { subscribers: number }
}

/** Reads the numbered messages of a burst and returns their sequence numbers. */
async function readBurst(peer: Peer, count: number): Promise<number[]> {
  const sequence: number[] = []
  for (let i = 0; i < count; i++) {
    const bytes = await readBinary(peer)
    expect(bytes.byteLength).toBe(BURST_MESSAGE_BYTES)
    sequence.push(new DataView(bytes.buffer, bytes.byteOffset).getUint32(0))
  }
  return sequence
}

/** Reads until the connection ends, and returns the burst numbers it got before the end. */
async function readBurstUntilEnd(peer: Peer): Promise<number[]> {
  const sequence: number[] = []
  for (;;) {
    const message = await peer.read(15_000).catch(() => undefined)
    if (!message) return sequence
    if (message.type === 'binary') {
      sequence.push(new DataView(message.data.buffer, message.data.byteOffset).getUint32(0))
    }
  }
}

const range = (count: number) => Array.from({ length: count }, (_, i) => i)
let topicCounter = 0
const newTopic = (label: string) =>
  `${label}-${++topicCounter}-${Math.random().toString(36).slice(2, 8)}`

/** Registers the topic scenarios. */
export function topicScenarios(harness: HarnessRef): void {
  describe('fan-out', () => {
    it('reaches every other subscriber once and in order, and never the sender', async () => {
      const topic = newTopic('room')
      const peers = [
        await join(harness, 'topic', topic),
        await join(harness, 'topic', topic),
        await join(harness, 'topic', topic),
        await join(harness, 'topic-events', topic),
      ]
      const [sender, ...others] = peers as [Peer, ...Peer[]]
      for (let i = 0; i < 100; i++) sender.send(`message ${i}`)
      for (const peer of others) {
        for (let i = 0; i < 100; i++) await expectText(peer, `message ${i}`)
      }
      // A sentinel from outside comes next for everyone: nothing came twice, and the sender
      // got none of its own messages.
      expect(await publish(harness, topic, 'end')).toEqual({ subscribers: 4 })
      for (const peer of peers) await expectText(peer, 'end')
    })

    it('keeps the order of each publisher when two publish at once', async () => {
      const topic = newTopic('two-publishers')
      const a = await join(harness, 'topic', topic)
      const b = await join(harness, 'topic', topic)
      const listener = await join(harness, 'topic', topic)
      for (let i = 0; i < 50; i++) {
        a.send(`a${i}`)
        b.send(`b${i}`)
      }
      const got: string[] = []
      for (let i = 0; i < 100; i++) got.push(await readText(listener))
      expect(got.filter((m) => m.startsWith('a'))).toEqual(range(50).map((i) => `a${i}`))
      expect(got.filter((m) => m.startsWith('b'))).toEqual(range(50).map((i) => `b${i}`))
    })

    it('keeps text as text and bytes as bytes, from a connection and from an HTTP route', async () => {
      const topic = newTopic('types')
      const sender = await join(harness, 'topic', topic)
      const receiver = await join(harness, 'topic-events', topic)
      const bytes = patternBytes(70_000, 5)
      sender.send('héllo wörld 😀')
      sender.send(bytes)
      sender.send('')
      sender.send(new Uint8Array(0))
      expect(await receiver.read()).toEqual({ type: 'text', data: 'héllo wörld 😀' })
      expect(await readBinary(receiver)).toEqual(bytes)
      expect(await receiver.read()).toEqual({ type: 'text', data: '' })
      expect(await readBinary(receiver)).toEqual(new Uint8Array(0))
      await publish(harness, topic, patternBytes(300, 9))
      await publish(harness, topic, '{"from":"http"}')
      for (const peer of [sender, receiver]) {
        expect(await readBinary(peer)).toEqual(patternBytes(300, 9))
        expect(await peer.read()).toEqual({ type: 'text', data: '{"from":"http"}' })
      }
    })

    it('keeps published messages in order with the connection’s own sends', async () => {
      const topic = newTopic('mixed')
      const peer = await join(harness, 'topic-mix', topic)
      const other = await join(harness, 'topic', topic)
      peer.send('20')
      for (let i = 0; i < 20; i++) {
        await expectText(peer, `send ${i}`)
        await expectText(peer, `publish ${i}`)
      }
      for (let i = 0; i < 20; i++) await expectText(other, `publish ${i}`)
    })
  })

  // Issue 18 #9 and #10: a client that names rooms decided how many a socket held, and names
  // with a lone surrogate shared one backplane channel.
  describe('bounds', () => {
    it('holds at most 128 topics per connection and names of 256 bytes, and refuses names that are not well-formed Unicode', async () => {
      const topic = newTopic('limits')
      const peer = await harness().dial(withId(`/topic-limits/${topic}`, newId('topic-limits')))
      expect(JSON.parse(await readText(peer))).toEqual({
        held: 128,
        firstRefused: 128,
        tooLong: 'RangeError',
        loneSurrogate: 'TypeError',
        publishLoneSurrogate: 'TypeError',
      })
      await closedWithin(peer)
      await waitForSubscribers(harness, `${topic}-0`, 0)
    })
  })

  describe('hubs', () => {
    it('two hubs are isolated: a publish on one never reaches the subscribers of the other', async () => {
      const topic = newTopic('hubs')
      const sibling = harness().sibling
      const here = await join(harness, 'topic', topic)
      const hereEvents = await join(harness, 'topic-events', topic)
      const there = await sibling.dial(withId(`/topic/${topic}`, newId('topic')))
      await expectText(there, 'joined')
      // Each hub counts its own subscribers only.
      expect(await subscribers(harness, topic)).toBe(2)
      const counted = await sibling.fetch(`/subscribers/${topic}`)
      expect(await counted.json()).toEqual({ subscribers: 1 })
      // From an HTTP route (getHub(c)) and from a connection, on this hub...
      expect(await publish(harness, topic, 'from this hub')).toEqual({ subscribers: 2 })
      here.send('from a connection here')
      await expectText(here, 'from this hub')
      await expectText(hereEvents, 'from this hub')
      await expectText(hereEvents, 'from a connection here')
      // ...and from the other hub's route and connection: only the other hub's subscribers.
      const published = await sibling.fetch(`/publish/${topic}`, {
        method: 'POST',
        body: 'from the other hub',
        headers: { 'content-type': 'text/plain' },
      })
      expect(await published.json()).toEqual({ subscribers: 1 })
      // `there` gets nothing of this hub's: the other hub's message is its next one.
      await expectText(there, 'from the other hub')
      there.send('from a connection there')
      // A sentinel on this hub comes next for its subscribers: nothing of the other hub's came.
      await publish(harness, topic, 'end')
      await expectText(here, 'end')
      await expectText(hereEvents, 'end')
    })
  })

  describe('leaving', () => {
    it('takes a connection out of every topic when it closes or vanishes', async () => {
      const topic = newTopic('leave')
      const closing = await join(harness, 'topic', topic)
      const vanishing = await join(harness, 'topic', topic)
      const staying = await join(harness, 'topic-events', topic)
      expect(await subscribers(harness, topic)).toBe(3)
      closing.close(1000)
      await closedWithin(closing)
      await waitForSubscribers(harness, topic, 2)
      vanishing.vanish()
      await waitForSubscribers(harness, topic, 1)
      expect(await publish(harness, topic, 'still here')).toEqual({ subscribers: 1 })
      await expectText(staying, 'still here')
      staying.close(1000)
      await waitForSubscribers(harness, topic, 0)
    })

    it('lets an event controller publish from close: the room hears who left', async () => {
      const topic = newTopic('left')
      const leavingId = newId('leaving')
      const leaving = await join(harness, 'topic-events', topic, leavingId)
      const staying = await join(harness, 'topic-events', topic)
      const listener = await join(harness, 'topic', topic)
      leaving.send('bye all')
      await expectText(staying, 'bye all')
      await expectText(listener, 'bye all')
      leaving.close(1000)
      await expectText(staying, `left:${leavingId}`)
      await expectText(listener, `left:${leavingId}`)
      await waitForSubscribers(harness, topic, 2)
    })
  })

  describe('a subscriber that cannot keep up', () => {
    /** A paused subscriber on `route`, and two that read, on a fresh topic. */
    async function slowRoom(route: 'topic-slow' | 'topic-drop') {
      const topic = newTopic(route)
      const slowId = newId(route)
      const slow = await harness().dialPaused(withId(`/${route}/${topic}`, slowId))
      await waitForSubscribers(harness, topic, 1)
      const fast = [await join(harness, 'topic', topic), await join(harness, 'topic', topic)]
      const response = await harness().fetch(`/burst/${topic}?watch=${slowId}`, { method: 'POST' })
      const burst = (await response.json()) as { published: number; ms: number }
      return { topic, slow, slowId, fast, burst }
    }

    it(`closes it with 1008 past maxPublishBuffer (${SMALL_PUBLISH_BUFFER} bytes), and the others get everything`, async () => {
      const h = harness()
      const { slow, slowId, fast, burst } = await slowRoom('topic-slow')
      // The readers are not slowed down: each gets every message, in order.
      for (const peer of fast)
        expect(await readBurst(peer, burst.published)).toEqual(range(burst.published))
      if (h.differences.publishBound) {
        expect(burst.published).toBeLessThan(MAX_BURST_MESSAGES)
        // The close frame waits behind what the paused peer has not read: it reads, then
        // answers, and the server's read ends with the same 1008.
        slow.resume()
        const got = await readBurstUntilEnd(slow)
        expect(got).toEqual(range(got.length))
        expect(got.length).toBeLessThan(burst.published)
        const close = await closedWithin(slow)
        const reason = `Subscriber too slow: over ${SMALL_PUBLISH_BUFFER} bytes of published messages unsent`
        expect(close).toEqual({ code: 1008, reason })
        const report = await waitForReport(h, slowId, (r) => r.readError !== undefined)
        expect(report.readError).toMatchObject({ code: 1008, reason })
      } else {
        // The runtime cannot say how much it holds unsent: the slow subscriber is never
        // detected, the runtime holds everything, and it all arrives once the peer reads.
        expect(burst.published).toBe(MAX_BURST_MESSAGES)
        slow.resume()
        await expectText(slow, 'joined')
        expect(await readBurst(slow, burst.published)).toEqual(range(burst.published))
        expect((await h.report(slowId))?.readError).toBeUndefined()
      }
    })

    it("drops and counts its messages with slowSubscriber 'drop', and keeps it", async () => {
      const h = harness()
      const { topic, slow, slowId, fast, burst } = await slowRoom('topic-drop')
      for (const peer of fast)
        expect(await readBurst(peer, burst.published)).toEqual(range(burst.published))
      const report = await h.report(slowId)
      expect(report?.readError).toBeUndefined()
      const dropped = report?.droppedMessages ?? -1
      if (h.differences.publishBound) {
        expect(burst.published).toBeLessThan(MAX_BURST_MESSAGES)
        expect(dropped).toBeGreaterThan(0)
      } else {
        expect(burst.published).toBe(MAX_BURST_MESSAGES)
        expect(dropped).toBe(0)
      }
      slow.resume()
      await expectText(slow, 'joined')
      const kept = burst.published - dropped
      expect(await readBurst(slow, kept)).toEqual(range(kept))
      // Still subscribed, and delivered to again once it has caught up.
      await publish(harness, topic, 'after')
      await expectText(slow, 'after')
    })
  })
}
