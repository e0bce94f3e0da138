/**
 * Presence in the core (issue 22): who is in a topic, on one hub and across hubs on the test
 * kit's memory backplane, whose faults act as Redis's. A view kept from `topics.presence()` and
 * the `'presence'` events must equal the truth after every fault.
 */
import fc from 'fast-check'
import { Hono } from 'hono'
import { describe, expect, it, vi } from 'vitest'
import { type Backplane, createHub } from '../src/adapter.js'
import {
  type Conn,
  type EventController,
  type Hub,
  MAX_PRESENCE_META_BYTES,
  type PresenceEvent,
  type PresenceMember,
  upgrade,
} from '../src/index.js'
import { PresenceView } from '../src/presence-view.js'
import { connect, hibernatable, memoryBackplane, type TestPeer } from '../src/testing.js'

const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 0))
}

/**
 * A controller whose connections join `?topic=` with `?meta=` (JSON) and obey the peer:
 * `meta <json>` subscribes again with it, `leave` unsubscribes, `join <topic> <json>` joins
 * another topic, `close` closes. It answers every command with `ok` or the error's text.
 */
const controller = (): EventController => ({
  async open(conn: Conn) {
    const url = new URL(conn.url)
    const topic = url.searchParams.get('topic') ?? 'room'
    const meta = url.searchParams.get('meta')
    try {
      await conn.subscribe(topic, meta === null ? {} : { presence: JSON.parse(meta) })
      await conn.send('ok')
    } catch (err) {
      await conn.send(`${(err as Error).name}: ${(err as Error).message}`)
    }
  },
  async message(conn, message) {
    const [command, ...rest] = String(message.data).split(' ')
    const topic = new URL(conn.url).searchParams.get('topic') ?? 'room'
    try {
      if (command === 'meta') await conn.subscribe(topic, { presence: JSON.parse(rest.join(' ')) })
      else if (command === 'leave') conn.unsubscribe(topic)
      else if (command === 'join') {
        await conn.subscribe(rest[0] as string, { presence: JSON.parse(rest.slice(1).join(' ')) })
      } else if (command === 'close') return void (await conn.close(1000))
      await conn.send('ok')
    } catch (err) {
      await conn.send(`${(err as Error).name}: ${(err as Error).message}`)
    }
  },
})

/** An instance: a hub (on a backplane when given one) whose route runs {@link controller}. */
async function instance(backplane?: Backplane) {
  const onError = vi.fn()
  const hub: Hub = createHub({ onError })
  if (backplane) await hub.topics.useBackplane(backplane)
  const app = new Hono().get('/', upgrade(controller(), { logger: { error: vi.fn() } }))
  const events: PresenceEvent[] = []
  hub.topics.addEventListener('presence', (event) => events.push(event as PresenceEvent))
  const join = async (meta?: unknown, topic = 'room') => {
    const query = new URLSearchParams({ topic })
    if (meta !== undefined) query.set('meta', JSON.stringify(meta))
    const peer = await connect(app, `/?${query}`, { hub })
    expect((await peer.read()).data).toBe('ok')
    return peer
  }
  return { hub, topics: hub.topics, join, events, onError, backplane }
}

/** A sorted, comparable listing of members. */
const listing = (members: Iterable<PresenceMember>) =>
  [...members].map((m) => JSON.stringify([m.id, m.meta])).sort()

/** A view kept from one read and every later event, as an app keeps one. */
async function keptView(topics: Hub['topics'], topic: string) {
  const view = new Map<string, PresenceMember>()
  const pending: PresenceEvent[] = []
  let read = false
  topics.addEventListener('presence', (event) => {
    const diff = event as PresenceEvent
    if (diff.topic !== topic) return
    if (!read) pending.push(diff)
    else apply(diff)
  })
  function apply(diff: PresenceEvent) {
    for (const member of diff.leaves) {
      expect(view.has(member.id), `a leave of ${member.id}, which the view does not list`).toBe(
        true,
      )
      view.delete(member.id)
    }
    for (const member of diff.joins) {
      expect(view.has(member.id), `a join of ${member.id}, which the view lists`).toBe(false)
      view.set(member.id, member)
    }
  }
  const members = await topics.presence(topic)
  read = true
  for (const member of members) view.set(member.id, member)
  // Read while nothing was on its way: no event can fall between the read and the view.
  expect(pending).toEqual([])
  return view
}

describe('presence on one hub', () => {
  it('lists a member from its subscription, with one id for all its topics, until it unsubscribes or closes', async () => {
    const a = await instance()
    expect(await a.topics.presence('room')).toEqual([])
    const alice = await a.join({ name: 'alice' })
    const [member] = await a.topics.presence('room')
    expect(member?.meta).toEqual({ name: 'alice' })
    expect(member?.id).toMatch(/^[0-9a-f-]{36}$/)
    expect(a.events.map((e) => [e.topic, e.joins, e.leaves])).toEqual([['room', [member], []]])
    alice.send('join other {"name":"alice","x":1}')
    expect((await alice.read()).data).toBe('ok')
    const [other] = await a.topics.presence('other')
    expect(other).toEqual({ id: member?.id, meta: { name: 'alice', x: 1 } })
    alice.send('leave')
    expect((await alice.read()).data).toBe('ok')
    expect(await a.topics.presence('room')).toEqual([])
    expect(a.events.at(-1)).toMatchObject({ topic: 'room', joins: [], leaves: [member] })
    alice.close(1000)
    await alice.closed
    expect(await a.topics.presence('other')).toEqual([])
    expect(a.events.at(-1)).toMatchObject({ topic: 'other', joins: [], leaves: [other] })
  })

  it('a subscriber without metadata is not listed; one subscribing again with other metadata leaves and joins in one event, with equal metadata fires nothing', async () => {
    const a = await instance()
    await a.join()
    expect(await a.topics.presence('room')).toEqual([])
    const bob = await a.join({ name: 'bob', n: [1, 2] })
    const [old] = await a.topics.presence('room')
    a.events.length = 0
    bob.send('meta {"name":"bob","n":[1,2]}')
    expect((await bob.read()).data).toBe('ok')
    expect(a.events).toEqual([])
    bob.send('meta {"name":"bob","away":true}')
    expect((await bob.read()).data).toBe('ok')
    const renewed = { id: old?.id, meta: { name: 'bob', away: true } }
    expect(a.events.map((e) => [e.joins, e.leaves])).toEqual([[[renewed], [old]]])
    expect(await a.topics.presence('room')).toEqual([renewed])
  })

  it('a member leaves on every kind of end: a close, a cut connection (1006), a vanished peer, a shutdown', async () => {
    const a = await instance()
    const peers = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((name) => a.join({ name })))
    expect(await a.topics.presence('room')).toHaveLength(5)
    const [closes, closesFromServer, cut, vanishes] = peers as [
      TestPeer,
      TestPeer,
      TestPeer,
      TestPeer,
    ]
    closes.close(1001)
    closesFromServer.send('close')
    cut.cut()
    vanishes.vanish()
    await Promise.all([closes.closed, closesFromServer.closed, vanishes.closed])
    await settle()
    const left = (await a.topics.presence('room')).map((m) => m.meta)
    expect(left).toEqual([{ name: 'e' }])
    await a.hub.connections.shutdown({ timeout: 50 })
    expect(await a.topics.presence('room')).toEqual([])
    const leaves = a.events.flatMap((e) => e.leaves.map((m) => (m.meta as { name: string }).name))
    expect(leaves.sort()).toEqual(['a', 'b', 'c', 'd', 'e'])
  })

  it('refuses metadata that is not JSON or is over the bound, with what to do, and then makes no subscription', async () => {
    const hub = createHub()
    const seen: string[] = []
    const wrongs: [unknown, RegExp | null][] = [
      [{ a: undefined }, /^TypeError: .*meta\.a is undefined, which JSON drops\. Convert it first/],
      [{ f: () => 1 }, /meta\.f is a function/],
      [{ n: 1n }, /meta\.n is a bigint/],
      [{ at: new Date(0) }, /meta\.at is a Date, not a plain object.*a Date to its ISO string/],
      [[1, Number.NaN], /meta\[1\] is NaN, which JSON writes as null/],
      [new Map(), /meta is a Map/],
      [undefined, null],
      [
        'x'.repeat(MAX_PRESENCE_META_BYTES),
        /^RangeError: .*1026 bytes as UTF-8 JSON; the limit is 1024 \(MAX_PRESENCE_META_BYTES\): keep ids/,
      ],
      ['é'.repeat(511), /^RangeError: .*1024 bytes|^ok$/],
    ]
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    wrongs.push([cyclic, /meta\.self refers to itself/])
    const app = new Hono().get(
      '/',
      upgrade({
        async open(conn) {
          for (const [meta] of wrongs) {
            const options = meta === undefined ? {} : { presence: meta as never }
            await conn.subscribe(`t${seen.length}`, options).then(
              () => seen.push('ok'),
              (err: Error) => seen.push(`${err.name}: ${err.message}`),
            )
          }
          await conn.send('done')
        },
        message() {},
      }),
    )
    const peer = await connect(app, '/', { hub })
    await peer.read()
    wrongs.forEach(([, expected], i) => {
      if (expected) expect(seen[i]).toMatch(expected)
      else expect(seen[i]).toBe('ok')
    })
    // 'é' × 511 is 1024 bytes with its quotes: at the bound, accepted.
    expect(seen[8]).toBe('ok')
    // Refused metadata made no subscription.
    expect(hub.topics.names().sort()).toEqual(['t6', 't8'])
  })

  it('keeps its own copy of the metadata: changing the app’s object later changes no view', async () => {
    const hub = createHub()
    const meta = { name: 'alice' }
    const app = new Hono().get(
      '/',
      upgrade({
        async open(conn) {
          await conn.subscribe('room', { presence: meta })
          meta.name = 'mallory'
          await conn.send('ok')
        },
        message() {},
      }),
    )
    const peer = await connect(app, '/', { hub })
    await peer.read()
    expect((await hub.topics.presence('room')).map((m) => m.meta)).toEqual([{ name: 'alice' }])
  })

  it('rebuilds the view from the sockets after a hibernation: same ids, no event, and a leave after the wake', async () => {
    const room = hibernatable(controller, { evictEveryEvent: false })
    const alice = await room.connect('/?topic=room&meta={"name":"alice"}')
    const bob = await room.connect('/?topic=room&meta={"name":"bob"}')
    await alice.read()
    await bob.read()
    const before = listing(await room.topics.presence('room'))
    expect(before).toHaveLength(2)
    expect(alice.persisted?.presence?.topics).toEqual({ room: { name: 'alice' } })
    room.evict()
    const events: PresenceEvent[] = []
    room.topics.addEventListener('presence', (e) => events.push(e as PresenceEvent))
    expect(listing(await room.topics.presence('room'))).toEqual(before)
    expect(events).toEqual([])
    bob.send('meta {"name":"bob","away":true}')
    expect((await bob.read()).data).toBe('ok')
    room.evict()
    const after = listing(await room.topics.presence('room'))
    expect(after.some((m) => m.includes('"away":true'))).toBe(true)
    // The id is the one from before both wakes.
    expect(after.map((m) => JSON.parse(m)[0]).sort()).toEqual(
      before.map((m) => JSON.parse(m)[0]).sort(),
    )
    const woken: PresenceEvent[] = []
    room.topics.addEventListener('presence', (e) => woken.push(e as PresenceEvent))
    alice.close(1000)
    await alice.closed
    expect(woken.map((e) => e.leaves.map((m) => m.meta))).toEqual([[{ name: 'alice' }]])
    expect((await room.topics.presence('room')).map((m) => m.meta)).toEqual([
      { name: 'bob', away: true },
    ])
  })

  it('a hibernatable object evicted before every event keeps its members right', async () => {
    const room = hibernatable(controller, { evictEveryEvent: true })
    const peers: TestPeer[] = []
    for (const name of ['a', 'b', 'c']) {
      const peer = await room.connect(`/?topic=room&meta=${JSON.stringify({ name })}`)
      await peer.read()
      peers.push(peer)
    }
    peers[1]?.send('leave')
    expect((await peers[1]?.read())?.data).toBe('ok')
    peers[2]?.send('meta {"name":"c2"}')
    expect((await peers[2]?.read())?.data).toBe('ok')
    expect(room.evictions).toBeGreaterThan(1)
    const metas = (await room.topics.presence('room')).map((m) => m.meta)
    expect(metas).toEqual(expect.arrayContaining([{ name: 'a' }, { name: 'c2' }]))
    expect(metas).toHaveLength(2)
  })
})

describe('presence across hubs on the memory backplane', () => {
  it('two hubs see each other’s members, with joins and leaves as diffs', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const b = await instance(bus.backplane())
    const alice = await a.join({ name: 'alice' })
    const bob = await b.join({ name: 'bob' })
    await settle()
    const names = async (hub: typeof a) =>
      (await hub.topics.presence('room')).map((m) => (m.meta as { name: string }).name).sort()
    expect(await names(a)).toEqual(['alice', 'bob'])
    expect(await names(b)).toEqual(['alice', 'bob'])
    bob.close(1000)
    await bob.closed
    await settle()
    expect(await names(a)).toEqual(['alice'])
    expect(a.events.at(-1)?.leaves.map((m) => m.meta)).toEqual([{ name: 'bob' }])
    // A topic not held here reads the backplane.
    const c = await instance(bus.backplane())
    expect((await c.topics.presence('room')).map((m) => m.meta)).toEqual([{ name: 'alice' }])
    alice.send('meta {"name":"alicia"}')
    await alice.read()
    await settle()
    // b holds the topic no more: it reads the backplane.
    expect(b.topics.names()).toEqual([])
    expect(await names(b)).toEqual(['alicia'])
    expect(await names(c)).toEqual(['alicia'])
  })

  it('a topic left while its first read is on its way fires no event once it is not held, and nothing twice when held again', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    // B's reads take a while (Redis far away).
    const slow = bus.backplane()
    const shared = slow.presence as NonNullable<Backplane['presence']>
    const read = shared.read.bind(shared)
    shared.read = async (topic) => {
      const members = await read(topic)
      await new Promise((resolve) => setTimeout(resolve, 20))
      return members
    }
    const b = await instance(slow)
    await a.join({ name: 'alice' })
    await settle()
    const unheld: string[] = []
    b.topics.addEventListener('presence', (event) => {
      const { topic, joins, leaves } = event as PresenceEvent
      if (!b.topics.names().includes(topic)) {
        unheld.push(JSON.stringify([joins.map((m) => m.meta), leaves.map((m) => m.meta)]))
      }
    })
    for (let round = 0; round < 5; round++) {
      // Bob joins, which starts the view's first read, and leaves before it is back.
      const bob = await b.join({ name: 'bob' })
      bob.send('leave')
      expect((await bob.read()).data).toBe('ok')
      await new Promise((resolve) => setTimeout(resolve, 40))
      bob.close(1000)
      await bob.closed
    }
    expect(b.topics.names()).toEqual([])
    expect(unheld).toEqual([])
    // A list kept from the events (read once, then applied) equals the truth when held again.
    const kept = new Map<string, unknown>()
    b.topics.addEventListener('presence', (event) => {
      const { joins, leaves } = event as PresenceEvent
      for (const m of leaves) expect(kept.delete(m.id)).toBe(true)
      for (const m of joins) {
        expect(kept.has(m.id)).toBe(false)
        kept.set(m.id, m.meta)
      }
    })
    const carol = await b.join({ name: 'carol' })
    await new Promise((resolve) => setTimeout(resolve, 40))
    expect([...kept.values()]).toEqual(
      expect.arrayContaining([{ name: 'carol' }, { name: 'alice' }]),
    )
    expect(kept.size).toBe(2)
    carol.close(1000)
  })

  it('converges after a cut: what was missed during it arrives as one diff when the backplane is back', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const b = await instance(bus.backplane())
    await a.join({ name: 'a1' })
    const a2 = await a.join({ name: 'a2' })
    await b.join({ name: 'b1' })
    await settle()
    const viewOfB = await keptView(b.topics, 'room')
    bus.cut(a.backplane as Backplane)
    await a.join({ name: 'a3' })
    a2.close(1000)
    await a2.closed
    await settle()
    // The cut hub's joins and leaves were lost: the other still sees the old members.
    expect(listing(await b.topics.presence('room'))).toEqual(listing(viewOfB.values()))
    expect([...viewOfB.values()].map((m) => (m.meta as { name: string }).name).sort()).toEqual([
      'a1',
      'a2',
      'b1',
    ])
    bus.restore(a.backplane as Backplane)
    await settle()
    const truth = listing(await a.topics.presence('room'))
    expect(truth.map((m) => JSON.parse(m)[1].name).sort()).toEqual(['a1', 'a3', 'b1'])
    expect(listing(await b.topics.presence('room'))).toEqual(truth)
    expect(listing(viewOfB.values())).toEqual(truth)
  })

  it('an instance reaped during a long cut leaves every view, then joins again when it is back, never listed twice', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const b = await instance(bus.backplane())
    await a.join({ name: 'a1' })
    await b.join({ name: 'b1' })
    await settle()
    const viewOfB = await keptView(b.topics, 'room')
    bus.cut(a.backplane as Backplane)
    bus.expire(a.backplane as Backplane)
    await settle()
    expect([...viewOfB.values()].map((m) => m.meta)).toEqual([{ name: 'b1' }])
    bus.restore(a.backplane as Backplane)
    await settle()
    const names = [...viewOfB.values()].map((m) => (m.meta as { name: string }).name)
    expect(names.sort()).toEqual(['a1', 'b1'])
    expect(listing(await a.topics.presence('room'))).toEqual(listing(viewOfB.values()))
  })

  it('a store restarted empty lists nobody until each instance is back and asserts its members', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    const b = await instance(bus.backplane())
    await a.join({ name: 'a1' })
    await b.join({ name: 'b1' })
    await settle()
    bus.reset()
    const c = await instance(bus.backplane())
    expect(await c.topics.presence('room')).toEqual([])
    // A restarted Redis drops its clients: each instance is cut, then reconnects.
    for (const i of [a, b]) bus.cut(i.backplane as Backplane)
    for (const i of [a, b]) bus.restore(i.backplane as Backplane)
    await settle()
    const all = ['a1', 'b1']
    for (const i of [a, b, c]) {
      const names = (await i.topics.presence('room')).map((m) => (m.meta as { name: string }).name)
      expect(names.sort()).toEqual(all)
    }
  })

  it('shares the members a hub had before it was given a backplane, and forgets the others’ when it closes it', async () => {
    const bus = memoryBackplane()
    const a = await instance()
    await a.join({ name: 'a1' })
    const b = await instance(bus.backplane())
    await b.join({ name: 'b1' })
    await a.topics.useBackplane(bus.backplane())
    await settle()
    const names = async (i: typeof a) =>
      (await i.topics.presence('room')).map((m) => (m.meta as { name: string }).name).sort()
    expect(await names(a)).toEqual(['a1', 'b1'])
    expect(await names(b)).toEqual(['a1', 'b1'])
    await a.topics.closeBackplane()
    await settle()
    expect(await names(a)).toEqual(['a1'])
    expect(await names(b)).toEqual(['b1'])
  })

  it('rejects a read of a topic not held here while the backplane is cut, and reports no member twice meanwhile', async () => {
    const bus = memoryBackplane()
    const a = await instance(bus.backplane())
    bus.cut(a.backplane as Backplane)
    await expect(a.topics.presence('elsewhere')).rejects.toThrow(/cut/)
  })

  it('property: views kept from a read and the events equal the truth after any joins, leaves, cuts, reaps and restores', async () => {
    type Op =
      | { kind: 'join'; hub: number; name: string }
      | { kind: 'meta'; hub: number; index: number; name: string }
      | { kind: 'leave'; hub: number; index: number }
      | { kind: 'close'; hub: number; index: number }
      | { kind: 'cut'; hub: number }
      | { kind: 'expire'; hub: number }
      | { kind: 'restore'; hub: number }
      | { kind: 'settle'; hub: number }
    const hubIndex = fc.integer({ min: 0, max: 2 })
    const name = fc.constantFrom('x', 'y', 'z')
    const index = fc.nat(5)
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant('join' as const), hub: hubIndex, name }),
      fc.record({ kind: fc.constant('meta' as const), hub: hubIndex, index, name }),
      fc.record({ kind: fc.constant('leave' as const), hub: hubIndex, index }),
      fc.record({ kind: fc.constant('close' as const), hub: hubIndex, index }),
      fc.record({ kind: fc.constant('cut' as const), hub: hubIndex }),
      fc.record({ kind: fc.constant('expire' as const), hub: hubIndex }),
      fc.record({ kind: fc.constant('restore' as const), hub: hubIndex }),
      fc.record({ kind: fc.constant('settle' as const), hub: hubIndex }),
    )
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 25 }), async (ops) => {
        const bus = memoryBackplane()
        const hubs = [
          await instance(bus.backplane()),
          await instance(bus.backplane()),
          await instance(bus.backplane()),
        ]
        // Each hub holds the topic through an observer, and keeps a view from the start.
        for (const h of hubs) await h.join()
        await settle()
        const views = await Promise.all(hubs.map((h) => keptView(h.topics, 'room')))
        const peers: { peer: TestPeer; name: string | undefined }[][] = [[], [], []]
        // An instance is reaped only once it lost the store (as Redis's heartbeat goes on otherwise).
        const cut = new Set<number>()
        for (const step of ops) {
          const h = hubs[step.hub as number] as (typeof hubs)[number]
          const own = peers[step.hub as number] as { peer: TestPeer; name: string | undefined }[]
          const one = 'index' in step ? own[step.index % Math.max(own.length, 1)] : undefined
          if (step.kind === 'join')
            own.push({ peer: await h.join({ name: step.name }), name: step.name })
          else if (step.kind === 'meta' && one) {
            one.peer.send(`meta {"name":"${step.name}"}`)
            expect((await one.peer.read()).data).toBe('ok')
            one.name = step.name
          } else if (step.kind === 'leave' && one) {
            one.peer.send('leave')
            expect((await one.peer.read()).data).toBe('ok')
            one.name = undefined
          } else if (step.kind === 'close' && one) {
            own.splice(own.indexOf(one), 1)
            one.peer.close(1000)
            await one.peer.closed
          } else if (step.kind === 'cut') cut.add(step.hub)
          else if (step.kind === 'expire' && cut.has(step.hub)) bus.expire(h.backplane as Backplane)
          else if (step.kind === 'restore') cut.delete(step.hub)
          if (step.kind === 'cut') bus.cut(h.backplane as Backplane)
          if (step.kind === 'restore') bus.restore(h.backplane as Backplane)
          else if (step.kind === 'settle') await settle()
        }
        for (const h of hubs) bus.restore(h.backplane as Backplane)
        await settle()
        const truth = peers
          .flat()
          .flatMap((p) => (p.name ? [p.name] : []))
          .sort()
        const first = listing((await hubs[0]?.topics.presence('room')) ?? [])
        expect(new Set(first.map((m) => JSON.parse(m)[0])).size).toBe(first.length)
        expect(first.map((m) => JSON.parse(m)[1].name).sort()).toEqual(truth)
        for (const [i, h] of hubs.entries()) {
          expect(listing(await h.topics.presence('room'))).toEqual(first)
          expect(listing((views[i] as Map<string, PresenceMember>).values())).toEqual(first)
        }
        for (const h of hubs) await h.hub.connections.shutdown({ timeout: 50 })
      }),
      { numRuns: 60 },
    )
  })
})

describe('a presence view while a read is on its way', () => {
  it('replays what changed meanwhile over a stale read, and its events always describe the view', async () => {
    const diffs: [string[], string[]][] = []
    const kept = new Map<string, PresenceMember>()
    const view = new PresenceView((joins, leaves) => {
      diffs.push([joins.map((m) => m.id), leaves.map((m) => m.id)])
      for (const m of leaves) {
        expect(kept.has(m.id)).toBe(true)
        kept.delete(m.id)
      }
      for (const m of joins) {
        expect(kept.has(m.id)).toBe(false)
        kept.set(m.id, m)
      }
    }, false)
    const m = (id: string, meta: PresenceMember['meta'] = null): PresenceMember => ({ id, meta })
    view.joinLocal(m('own-stays'))
    view.joinLocal(m('own-goes'))
    let answer!: (members: PresenceMember[]) => void
    const loading = view.load(() => new Promise((resolve) => (answer = resolve)))
    // While the read is on its way: a remote join and leave, a local leave, a remote change.
    view.remote([m('r-new')], [])
    view.remote([], [m('r-gone')])
    view.leaveLocal('own-goes')
    view.remote([m('r-changed', 2)], [m('r-changed', 1)])
    view.joinLocal(m('own-late'))
    // The read was made before all of that.
    answer([m('own-stays'), m('own-goes'), m('r-gone'), m('r-changed', 1), m('r-old')])
    await loading
    expect(listing(view.members.values())).toEqual(
      listing([m('own-stays'), m('own-late'), m('r-new'), m('r-changed', 2), m('r-old')]),
    )
    expect(listing(kept.values())).toEqual(listing(view.members.values()))
    expect(view.loaded).toBe(true)
    // A later load supersedes an earlier one; a failed one leaves the view as it was.
    let first!: (members: PresenceMember[]) => void
    const superseded = view.load(() => new Promise((resolve) => (first = resolve)))
    const failed = view.load(() => Promise.reject(new Error('down')))
    first([])
    await superseded
    await expect(failed).rejects.toThrow('down')
    expect(view.loaded).toBe(false)
    expect(listing(kept.values())).toEqual(listing(view.members.values()))
    expect(view.members.size).toBe(5)
  })
})
