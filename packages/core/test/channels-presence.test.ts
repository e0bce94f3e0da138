/**
 * Presence frames of the channel protocol (issue 22): the state after `subscribed`, then diffs;
 * a list a client keeps from them equals the truth, on one hub, across hubs on the memory
 * backplane (with its faults) and across a Durable Object's hibernation.
 */
import { Hono } from 'hono'
import { describe, expect, it, vi } from 'vitest'
import { z } from 'zod'
import { type Backplane, createHub } from '../src/adapter.js'
import { CHANNEL_PROTOCOL, Channels } from '../src/channels.js'
import { type Hub, upgrade } from '../src/index.js'
import { connect, hibernatable, memoryBackplane, type TestPeer } from '../src/testing.js'

const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 0))
}

function makeChannels(onError = vi.fn()) {
  return new Channels<{ name: string }>({
    open(conn, c) {
      conn.data = { name: c.req.query('name') ?? 'anonymous' }
    },
    onError,
  })
    .topic('rooms/:room', {
      message: z.object({ text: z.string() }),
      // A name starting with `watch` observes without being listed.
      presence: ({ conn, params }) =>
        conn.data.name.startsWith('watch')
          ? undefined
          : { name: conn.data.name, room: params.room },
    })
    .topic('broken', {
      message: z.unknown(),
      presence: () => ({ at: new Date(0) }) as never,
    })
    .topic('plain', { message: z.unknown() })
}

type Member = { id: string; meta: { name: string } }
type Frame = Record<string, unknown>

/**
 * A channel peer that keeps each topic's member list from the presence frames, as the client
 * does, and fails on a diff that does not fit the list (a join of a member listed, a leave of
 * one that is not).
 */
class Peer {
  readonly lists = new Map<string, Map<string, Member['meta']>>()
  readonly self = new Map<string, string | undefined>()
  readonly frames: Frame[] = []
  readonly wrong: string[] = []
  #id = 0
  #waiters: (() => void)[] = []

  constructor(readonly peer: TestPeer) {
    void this.#pump()
  }

  async #pump() {
    for (;;) {
      let message: Awaited<ReturnType<TestPeer['read']>>
      try {
        message = await this.peer.read()
      } catch {
        return
      }
      const frame = JSON.parse(message.data as string) as Frame
      this.frames.push(frame)
      if (frame.type === 'presence') this.#apply(frame)
      for (const waiter of this.#waiters.splice(0)) waiter()
    }
  }

  #apply(frame: Frame) {
    const topic = frame.topic as string
    if (Array.isArray(frame.members)) {
      this.lists.set(topic, new Map((frame.members as Member[]).map((m) => [m.id, m.meta])))
      this.self.set(topic, frame.self as string | undefined)
      return
    }
    const list = this.lists.get(topic)
    if (!list) return void this.wrong.push(`a diff of ${topic} before its state`)
    for (const m of frame.leaves as Member[]) {
      if (!list.delete(m.id)) this.wrong.push(`leave of ${m.id}, not listed`)
    }
    for (const m of frame.joins as Member[]) {
      if (list.has(m.id)) this.wrong.push(`join of ${m.id}, listed already`)
      list.set(m.id, m.meta)
    }
  }

  /** Waits until `check` holds after some frame. */
  async until(check: () => boolean) {
    while (!check()) await new Promise<void>((resolve) => this.#waiters.push(resolve))
  }

  send(frame: Frame) {
    const id = ++this.#id
    this.peer.send(JSON.stringify({ id, ...frame }))
    return id
  }

  async subscribe(topic: string) {
    const id = this.send({ type: 'subscribe', topic })
    await this.until(() => this.frames.some((f) => f.id === id))
    return this.frames.find((f) => f.id === id) as Frame
  }

  names(topic: string) {
    return [...(this.lists.get(topic)?.values() ?? [])].map((m) => m.name).sort()
  }
}

async function instance(backplane?: Backplane) {
  const hub: Hub = createHub({ onError: vi.fn() })
  if (backplane) await hub.topics.useBackplane(backplane)
  const onError = vi.fn()
  const app = new Hono().get(
    '/ws',
    upgrade(makeChannels(onError), { subprotocols: [CHANNEL_PROTOCOL] }),
  )
  const join = async (name: string) =>
    new Peer(await connect(app, `/ws?name=${name}`, { hub, protocols: [CHANNEL_PROTOCOL] }))
  return { hub, join, onError, backplane }
}

describe('presence frames', () => {
  it('sends the state right after subscribed, with self, then joins and leaves as diffs', async () => {
    const a = await instance()
    const alice = await a.join('alice')
    expect(await alice.subscribe('rooms/lobby')).toMatchObject({ type: 'subscribed' })
    await alice.until(() => alice.lists.has('rooms/lobby'))
    const subscribedAt = alice.frames.findIndex((f) => f.type === 'subscribed')
    expect(alice.frames[subscribedAt + 1]).toMatchObject({
      type: 'presence',
      topic: 'rooms/lobby',
      members: [{ meta: { name: 'alice', room: 'lobby' } }],
    })
    const self = alice.self.get('rooms/lobby')
    expect(self).toBe((alice.frames[subscribedAt + 1]?.members as Member[] | undefined)?.[0]?.id)
    const bob = await a.join('bob')
    await bob.subscribe('rooms/lobby')
    await bob.until(() => bob.lists.has('rooms/lobby'))
    expect(bob.names('rooms/lobby')).toEqual(['alice', 'bob'])
    await alice.until(() => alice.names('rooms/lobby').length === 2)
    // An observer sees the members, is not one, and has no self.
    const watcher = await a.join('watcher')
    await watcher.subscribe('rooms/lobby')
    await watcher.until(() => watcher.lists.has('rooms/lobby'))
    expect(watcher.names('rooms/lobby')).toEqual(['alice', 'bob'])
    expect(watcher.self.get('rooms/lobby')).toBeUndefined()
    expect(watcher.frames.at(-1)).not.toHaveProperty('self')
    bob.send({ type: 'unsubscribe', topic: 'rooms/lobby' })
    await alice.until(() => alice.names('rooms/lobby').length === 1)
    await watcher.until(() => watcher.names('rooms/lobby').length === 1)
    const carol = await a.join('carol')
    await carol.subscribe('rooms/lobby')
    alice.peer.close(1000)
    await watcher.until(() => watcher.names('rooms/lobby').join() === 'carol')
    await settle()
    // Bob left the topic: no more of its frames.
    expect(bob.frames.filter((f) => f.type === 'presence')).toHaveLength(1)
    for (const p of [alice, bob, carol, watcher]) expect(p.wrong).toEqual([])
    // A topic without the hook sends no presence frame.
    await carol.subscribe('plain')
    await settle()
    expect(carol.frames.filter((f) => f.topic === 'plain').map((f) => f.type)).toEqual([
      'subscribed',
    ])
  })

  it('metadata the hook gives that is not JSON is the server’s bug: internal, onError, no subscription', async () => {
    const a = await instance()
    const alice = await a.join('alice')
    expect(await alice.subscribe('broken')).toMatchObject({ type: 'error', code: 'internal' })
    expect(String(a.onError.mock.calls[0]?.[0])).toMatch(/meta\.at is a Date/)
    expect(a.hub.topics.subscribers('broken')).toBe(0)
  })

  it('a list kept from the frames equals the truth across hubs, a cut, a reap and a restore', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const b = await instance(bus.backplane())
    const watcher = await b.join('watcher')
    await watcher.subscribe('rooms/x')
    const a1 = await a.join('a1')
    await a1.subscribe('rooms/x')
    const b1 = await b.join('b1')
    await b1.subscribe('rooms/x')
    await settle()
    expect(watcher.names('rooms/x')).toEqual(['a1', 'b1'])
    expect(a1.names('rooms/x')).toEqual(['a1', 'b1'])
    bus.cut(a.backplane as Backplane)
    const a2 = await a.join('a2')
    await a2.subscribe('rooms/x')
    b1.peer.close(1000)
    await settle()
    bus.expire(a.backplane as Backplane)
    await settle()
    expect(watcher.names('rooms/x')).toEqual([])
    bus.restore(a.backplane as Backplane)
    await settle()
    for (const p of [watcher, a1, a2]) {
      expect(p.names('rooms/x')).toEqual(['a1', 'a2'])
      expect(p.wrong).toEqual([])
    }
    expect(b.hub.topics.subscribers('rooms/x')).toBe(1)
  })

  it('keeps sending diffs to the subscribers a hibernation woke, and a wake lists the same ids', async () => {
    const onError = vi.fn()
    const room = hibernatable(() => makeChannels(onError), {
      path: '/ws',
      evictEveryEvent: true,
      upgrade: { subprotocols: [CHANNEL_PROTOCOL] },
    })
    const peers: Peer[] = []
    for (const name of ['alice', 'bob', 'carol']) {
      const peer = new Peer(
        await room.connect(`/ws?name=${name}`, { protocols: [CHANNEL_PROTOCOL] }),
      )
      await peer.subscribe('rooms/lobby')
      peers.push(peer)
    }
    const [alice, bob, carol] = peers as [Peer, Peer, Peer]
    await alice.until(() => alice.names('rooms/lobby').length === 3)
    room.evict()
    bob.send({ type: 'unsubscribe', topic: 'rooms/lobby' })
    await alice.until(() => alice.names('rooms/lobby').length === 2)
    room.evict()
    carol.peer.close(1000)
    await alice.until(() => alice.names('rooms/lobby').length === 1)
    const listed = await room.topics.presence('rooms/lobby')
    expect(listed.map((m) => m.id)).toEqual([alice.self.get('rooms/lobby')])
    expect(room.evictions).toBeGreaterThan(3)
    for (const p of peers) expect(p.wrong).toEqual([])
    expect(onError).not.toHaveBeenCalled()
  })
})
