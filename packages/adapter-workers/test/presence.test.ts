/**
 * Channel sockets of a `HandshakeObject` in real workerd (Miniflare on 127.0.0.1): idle clients'
 * heartbeats are answered by workerd itself (`setWebSocketAutoResponse`), so they never wake the
 * object; a socket that sends nothing, not even a heartbeat, for 3 × the heartbeat is stale and
 * closed when the object is awake anyway; an evicted object (workerd restarted on the same
 * storage) serves its clients again once they reconnect; a client whose TCP connection is cut
 * leaves.
 *
 * The objects count every run of their constructor (with its time) and of their handlers in their
 * own storage (test/presence-worker.ts); reading the counts is a request that wakes the object, so
 * it adds one constructor run and no handler run.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join as joinPath } from 'node:path'
import { Opcode, RawPeer } from '@handshake/conformance'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { bundleWorker, type RunningWorker, startWorker } from './miniflare.js'
import type { PresenceStats } from './presence-worker.js'

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** The channel protocol's heartbeat and its answer, byte for byte. */
const PING = '{"type":"ping"}'
const PONG = '{"type":"pong"}'

const folders: string[] = []
const workers = new Set<RunningWorker>()
const peers = new Set<RawPeer>()
const timers = new Set<ReturnType<typeof setInterval>>()
let script: Promise<string> | undefined

afterEach(async () => {
  for (const timer of timers) clearInterval(timer)
  timers.clear()
  for (const peer of peers) peer.vanish()
  peers.clear()
  for (const worker of workers) await worker.stop()
  workers.clear()
})
afterAll(() => {
  for (const folder of folders) rmSync(folder, { recursive: true, force: true })
})

/** Starts workerd; on `persist`, the objects' storage outlives it. */
async function start(persist?: string): Promise<RunningWorker> {
  script ??= bundleWorker('./presence-worker.ts')
  const worker = await startWorker({
    script: await script,
    durableObjects: { ROOMS: 'Room', FAST: 'FastRoom' },
    ...(persist ? { persist } : {}),
  })
  workers.add(worker)
  return worker
}

/** Stops workerd: every object is gone from memory, and every socket with it. */
async function stop(worker: RunningWorker): Promise<void> {
  for (const peer of peers) peer.vanish()
  peers.clear()
  workers.delete(worker)
  await worker.stop()
}

async function stats(worker: RunningWorker, path: string): Promise<PresenceStats> {
  const response = await fetch(`${worker.url}${path}/stats`)
  expect(response.status).toBe(200)
  return (await response.json()) as PresenceStats
}

/** Waits until `check` holds of the room's stats; how long it took, in ms. */
async function until(
  worker: RunningWorker,
  path: string,
  check: (stats: PresenceStats) => boolean,
  timeoutMs = 10_000,
): Promise<number> {
  const started = Date.now()
  for (;;) {
    const last = await stats(worker, path)
    if (check(last)) return Date.now() - started
    if (Date.now() - started > timeoutMs) {
      throw new Error(`The room never got there: ${JSON.stringify(last)}`)
    }
    await sleep(50)
  }
}

/** A channel client that joins `rooms/<room>` as `name` and has its subscription answered. */
async function join(worker: RunningWorker, path: string, name: string): Promise<RawPeer> {
  const peer = await RawPeer.connect(worker.url, `${path}/ws?name=${name}`, {
    protocols: ['handshake.v1'],
    answerPings: false,
  })
  peers.add(peer)
  expect(peer.protocol).toBe('handshake.v1')
  const room = path.split('/').at(-1)
  peer.send(JSON.stringify({ type: 'subscribe', id: 1, topic: `rooms/${room}` }))
  for (;;) {
    const frame = JSON.parse(String((await peer.read(10_000)).data)) as { type: string }
    if (frame.type === 'subscribed') return peer
  }
}

/** `count` clients, joined 20 at a time. */
async function joinMany(
  worker: RunningWorker,
  path: string,
  count: number,
  prefix = 'm',
): Promise<RawPeer[]> {
  const joined: RawPeer[] = []
  for (let i = 0; i < count; i += 20) {
    const batch = Array.from({ length: Math.min(20, count - i) }, (_, j) =>
      join(worker, path, `${prefix}${i + j}`),
    )
    joined.push(...(await Promise.all(batch)))
  }
  return joined
}

/** Sends the exact heartbeat every `everyMs`, spread over the period, as idle clients do. */
function beat(clients: readonly RawPeer[], everyMs: number): void {
  clients.forEach((client, i) => {
    const timer = setTimeout(
      () => {
        client.send(PING)
        const interval = setInterval(() => client.send(PING), everyMs)
        timers.add(interval)
      },
      Math.floor((i * everyMs) / clients.length),
    )
    timers.add(timer as never)
  })
}

/** The pongs a client received. */
function pongs(client: RawPeer): number {
  return client.frames.filter(
    (frame) => frame.opcode === Opcode.Text && new TextDecoder().decode(frame.payload) === PONG,
  ).length
}

/** The close code the client received, once it came (undefined if none within `ms`). */
async function closeCode(client: RawPeer, ms: number): Promise<number | undefined> {
  const close = await Promise.race([client.closeFrame, sleep(ms).then(() => undefined)])
  return close?.code
}

/** The members' names, sorted, and whether every member has an id of its own. */
function members(stats: PresenceStats): { names: string[]; ids: Map<string, string> } {
  const ids = new Map<string, string>()
  for (const member of stats.presence) {
    ids.set((member.meta as { name: string }).name, member.id)
  }
  expect(new Set(stats.presence.map((member) => member.id)).size).toBe(stats.presence.length)
  return { names: stats.presence.map((m) => (m.meta as { name: string }).name).sort(), ids }
}

interface PresenceFrame {
  type: 'presence'
  topic: string
  members?: PresenceStats['presence']
  joins?: PresenceStats['presence']
  leaves?: PresenceStats['presence']
}

/**
 * The members a client knows of from its presence frames: the last state frame, then every diff
 * after it (leaves first: a member whose metadata changed leaves and joins in one diff).
 */
function clientView(client: RawPeer): string[] {
  const view = new Map<string, string>()
  for (const frame of client.frames) {
    if (frame.opcode !== Opcode.Text) continue
    const parsed = JSON.parse(new TextDecoder().decode(frame.payload)) as { type: string }
    if (parsed.type !== 'presence') continue
    const { members, joins = [], leaves = [] } = parsed as PresenceFrame
    if (members) view.clear()
    for (const member of leaves) view.delete(member.id)
    for (const member of [...(members ?? []), ...joins]) {
      view.set(member.id, (member.meta as { name: string }).name)
    }
  }
  return [...view.values()].sort()
}

/** Waits until every client's own list is `names`. */
async function clientsSee(clients: readonly RawPeer[], names: string[]): Promise<void> {
  const deadline = Date.now() + 5000
  for (const client of clients) {
    while (JSON.stringify(clientView(client)) !== JSON.stringify(names)) {
      if (Date.now() > deadline) expect(clientView(client)).toEqual(names)
      await sleep(20)
    }
  }
}

const named = (prefix: string, count: number) =>
  Array.from({ length: count }, (_, i) => `${prefix}${i}`).sort()

function storageFolder(): string {
  const folder = mkdtempSync(joinPath(tmpdir(), 'handshake-presence-'))
  folders.push(folder)
  return folder
}

describe('idle channel clients of a HandshakeObject', () => {
  it('200 clients beating every 3 s for 60 s wake the object zero times; a silent one is stale at the next wake', async () => {
    const worker = await start()
    const path = '/rooms/idle'
    // Joins first, then sends nothing at all, not even a heartbeat: stale 60 s (3 × 20 s) later.
    const silent = await join(worker, path, 'silent')
    const clients = await joinMany(worker, path, 200)
    await until(worker, path, (s) => s.connections === 201 && s.subscribers === 201)
    beat(clients, 3000)
    const before = await stats(worker, path)
    const { ids: idsBefore } = members(before)
    expect(members(before).names).toEqual([...named('m', 200), 'silent'].sort())
    const windowStart = Date.now()

    await sleep(60_000)

    const windowEnd = Date.now()
    const after = await stats(worker, path)
    // Nothing ran in the object for 60 s: no handler (pings included), and its only new
    // incarnation is the one that answers this request, after the window (it hibernated).
    expect(after.handled).toBe(before.handled)
    const during = after.constructed.filter((at) => at > windowStart - 1000 && at < windowEnd)
    expect(during).toEqual([])
    expect(after.constructed.length).toBe(before.constructed.length + 1)
    // Every heartbeat was answered, by workerd.
    for (const client of clients) expect(pongs(client)).toBeGreaterThanOrEqual(18)
    // The 200 are there, the silent one was stale: closed (1001 on the wire, 1006 to the app).
    expect(after.connections).toBe(200)
    expect(after.subscribers).toBe(200)
    expect(after.closes).toEqual({ silent: 1006 })
    expect(await closeCode(silent, 5000)).toBe(1001)
    // Presence, rebuilt from the sockets' attachments by the wake: exactly the 200, each with
    // the id it had before the object slept.
    const { names, ids } = members(after)
    expect(names).toEqual(named('m', 200))
    for (const [name, id] of ids) expect(id).toBe(idsBefore.get(name))
    // And each of the 200 clients' own list, from its frames: the woken object sent the
    // silent one's leave to every one of them.
    await clientsSee(clients, named('m', 200))
    console.log(
      `zero-wake: handled ${before.handled} -> ${after.handled}, constructed ${before.constructed.length} -> ${after.constructed.length} (1 for the stats request), in the 60 s window ${during.length}; pongs per client min ${Math.min(...clients.map(pongs))}`,
    )
  }, 150_000)
})

describe('staleness: 3 × the heartbeat without a message or a heartbeat', () => {
  it('closes a silent socket when the object is awake anyway, and keeps one that beats or sends', async () => {
    const worker = await start()
    const path = '/fast/stale'
    const [beating, sending, silent] = [
      await join(worker, path, 'beating'),
      await join(worker, path, 'sending'),
      await join(worker, path, 'silent'),
    ]
    const joined = Date.now()
    beat([beating], 500)
    const publisher = setInterval(
      () =>
        sending.send(
          JSON.stringify({ type: 'publish', topic: 'rooms/stale', data: { text: 'hi' } }),
        ),
      500,
    )
    timers.add(publisher)
    // Within the bound (3 s): all three are there.
    await sleep(1500)
    const within = await stats(worker, path)
    expect(within.subscribers).toBe(3)
    expect(members(within).names).toEqual(['beating', 'sending', 'silent'])
    // Past it, the next request finds the silent one stale: closed, and not listed.
    await until(worker, path, (s) => s.presence.length === 2, 6000)
    const detected = Date.now() - joined
    const after = await stats(worker, path)
    expect(after.closes).toEqual({ silent: 1006 })
    expect(after.subscribers).toBe(2)
    expect(members(after).names).toEqual(['beating', 'sending'])
    await clientsSee([beating, sending], ['beating', 'sending'])
    expect(await closeCode(silent, 5000)).toBe(1001)
    expect(beating.connected && sending.connected).toBe(true)
    console.log(
      `stale: closed ${detected} ms after its last message (bound 3000 ms; polled every 50 ms, swept at most once a second)`,
    )
  }, 30_000)
})

describe('faults', () => {
  it("a client's TCP connection cut: its member leaves", async () => {
    const worker = await start()
    const path = '/rooms/cut'
    const [alice, bob] = [await join(worker, path, 'alice'), await join(worker, path, 'bob')]
    await until(worker, path, (s) => s.subscribers === 2)
    expect(members(await stats(worker, path)).names).toEqual(['alice', 'bob'])
    bob.vanish()
    const took = await until(worker, path, (s) => s.presence.length === 1)
    const after = await stats(worker, path)
    expect(after.closes).toEqual({ bob: 1006 })
    expect(after.subscribers).toBe(1)
    expect(members(after).names).toEqual(['alice'])
    await clientsSee([alice], ['alice'])
    expect(alice.connected).toBe(true)
    console.log(`TCP cut: left after ${took} ms`)
  })

  it('an evicted object (workerd restarted on its storage) lists its members again as they reconnect, each once', async () => {
    const folder = storageFolder()
    const path = '/rooms/evicted'
    let worker = await start(folder)
    await joinMany(worker, path, 10)
    await until(worker, path, (s) => s.subscribers === 10)
    const before = await stats(worker, path)
    expect(members(before).names).toEqual(named('m', 10))

    await stop(worker)
    worker = await start(folder)
    const reconnected = Date.now()
    const back = await joinMany(worker, path, 10)
    const took = Date.now() - reconnected
    const after = await stats(worker, path)
    expect(after.constructed.length).toBe(before.constructed.length + 1)
    expect(after.connections).toBe(10)
    expect(after.subscribers).toBe(10)
    // Right after the reconnects: each once, as the new connections it now is.
    const { names, ids } = members(after)
    expect(names).toEqual(named('m', 10))
    for (const [name, id] of ids) expect(id).not.toBe(members(before).ids.get(name))
    await clientsSee(back, named('m', 10))
    console.log(`eviction: 10 clients back in ${took} ms`)
  })
})
