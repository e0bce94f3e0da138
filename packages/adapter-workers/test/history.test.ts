/**
 * A `HandshakeObject`'s topic history, kept in the object's own storage, in real workerd
 * (Miniflare on 127.0.0.1): it outlives the object's eviction (workerd stopped and started
 * again on the same storage: every object is built anew) and its hibernation (workerd drops an
 * idle object after about 10 s while its sockets stay open). A client that comes back with its
 * position gets exactly what it missed, once, in order.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join as joinPath } from 'node:path'
import { RawPeer } from '@handshake/conformance'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { bundleWorker, type RunningWorker, startWorker } from './miniflare.js'
import { SHORT_TTL_MS } from './shared.js'

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

interface Position {
  epoch: string
  offset: number
}

/** What a room's socket receives: a delivery as JSON, or the subscription's answer. */
interface Received {
  type: 'message' | 'gap' | 'subscribed'
  topic?: string
  data?: string
  position?: Position
  reason?: string
  recovered?: boolean
}

const folders: string[] = []
const workers = new Set<RunningWorker>()
const peers = new Set<RawPeer>()
let script: Promise<string> | undefined

afterEach(async () => {
  for (const peer of peers) peer.vanish()
  peers.clear()
  for (const worker of workers) await worker.stop()
  workers.clear()
})
afterAll(() => {
  for (const folder of folders) rmSync(folder, { recursive: true, force: true })
})

/** A folder for the objects' storage, which outlives the workerd that uses it. */
function storageFolder(): string {
  const folder = mkdtempSync(joinPath(tmpdir(), 'handshake-history-'))
  folders.push(folder)
  return folder
}

async function start(persist: string): Promise<RunningWorker> {
  script ??= bundleWorker('./history-worker.ts')
  const worker = await startWorker({
    script: await script,
    durableObjects: { ROOMS: 'Room', LEGACY: 'LegacyRoom' },
    keyValueClasses: ['LegacyRoom'],
    persist,
  })
  workers.add(worker)
  return worker
}

/** Stops workerd: every object is gone from memory, and its sockets with it. */
async function stop(worker: RunningWorker): Promise<void> {
  for (const peer of peers) peer.vanish()
  peers.clear()
  workers.delete(worker)
  await worker.stop()
}

async function publish(worker: RunningWorker, path: string, data: string): Promise<Position> {
  const response = await fetch(`${worker.url}${path}/publish`, { method: 'POST', body: data })
  expect(response.status).toBe(200)
  return (await response.json()) as Position
}

async function constructed(worker: RunningWorker, path: string): Promise<number> {
  return (await (await fetch(`${worker.url}${path}/constructed`)).json()) as number
}

async function join(worker: RunningWorker, path: string, since?: Position): Promise<RawPeer> {
  const query = since ? `?epoch=${since.epoch}&offset=${since.offset}` : ''
  const peer = await RawPeer.connect(worker.url, `${path}/ws${query}`, { answerPings: false })
  peers.add(peer)
  return peer
}

async function receive(peer: RawPeer): Promise<Received> {
  return JSON.parse(String((await peer.read(5000)).data)) as Received
}

/** Reads until the subscription's answer: what came before it, and the answer. */
async function subscribed(peer: RawPeer): Promise<{ before: Received[]; answer: Received }> {
  const before: Received[] = []
  for (;;) {
    const item = await receive(peer)
    if (item.type === 'subscribed') return { before, answer: item }
    before.push(item)
  }
}

const message = (room: string, data: string, epoch: string, offset: number): Received => ({
  type: 'message',
  topic: room,
  data,
  position: { epoch, offset },
})

describe("a HandshakeObject's history, in its own storage", () => {
  it('outlives an eviction: positions go on in the same epoch, and a returning client gets exactly what it missed, once, in order', async () => {
    const folder = storageFolder()
    const room = 'evicted'
    const path = `/rooms/${room}`
    let worker = await start(folder)
    const alice = await join(worker, path)
    const { answer } = await subscribed(alice)
    expect(answer).toMatchObject({ recovered: true, position: { offset: 0 } })
    const epoch = answer.position?.epoch as string
    for (const [i, data] of ['m1', 'm2', 'm3'].entries()) {
      expect(await publish(worker, path, data)).toEqual({ epoch, offset: i + 1 })
      expect(await receive(alice)).toEqual(message(room, data, epoch, i + 1))
    }
    // Alice leaves with the position of the last message she got; one more is published.
    const last = { epoch, offset: 3 }
    alice.vanish()
    expect(await publish(worker, path, 'm4')).toEqual({ epoch, offset: 4 })

    // The eviction: workerd stops, and the next request builds the object anew from storage.
    await stop(worker)
    worker = await start(folder)
    expect(await constructed(worker, path)).toBe(2)
    expect(await publish(worker, path, 'm5')).toEqual({ epoch, offset: 5 })
    expect(await publish(worker, path, 'm6')).toEqual({ epoch, offset: 6 })

    const back = await join(worker, path, last)
    const recovery = await subscribed(back)
    expect(recovery.before).toEqual([
      message(room, 'm4', epoch, 4),
      message(room, 'm5', epoch, 5),
      message(room, 'm6', epoch, 6),
    ])
    expect(recovery.answer).toEqual({
      type: 'subscribed',
      position: { epoch, offset: 6 },
      recovered: true,
    })
    // Then live, with nothing twice.
    expect(await publish(worker, path, 'm7')).toEqual({ epoch, offset: 7 })
    expect(await receive(back)).toEqual(message(room, 'm7', epoch, 7))
  })

  it('outlives a hibernation: the woken object goes on from its positions, to the sockets that slept and to a returning client', async () => {
    const room = 'sleepy'
    const path = `/rooms/${room}`
    const worker = await start(storageFolder())
    const bob = await join(worker, path)
    const epoch = (await subscribed(bob)).answer.position?.epoch as string
    const alice = await join(worker, path)
    await subscribed(alice)
    for (const [i, data] of ['m1', 'm2'].entries()) {
      await publish(worker, path, data)
      expect(await receive(bob)).toEqual(message(room, data, epoch, i + 1))
      expect(await receive(alice)).toEqual(message(room, data, epoch, i + 1))
    }
    alice.vanish()
    const incarnation = await constructed(worker, path)

    // workerd drops an idle object after about 10 s; the pinned Miniflare cannot force it.
    await sleep(15_000)

    // The publish wakes the object: a new incarnation, whose history goes on where it was.
    expect(await publish(worker, path, 'm3')).toEqual({ epoch, offset: 3 })
    expect(await receive(bob)).toEqual(message(room, 'm3', epoch, 3))
    expect(await constructed(worker, path)).toBe(incarnation + 1)
    expect(await publish(worker, path, 'm4')).toEqual({ epoch, offset: 4 })
    expect(await receive(bob)).toEqual(message(room, 'm4', epoch, 4))

    const back = await join(worker, path, { epoch, offset: 2 })
    const recovery = await subscribed(back)
    expect(recovery.before).toEqual([message(room, 'm3', epoch, 3), message(room, 'm4', epoch, 4)])
    expect(recovery.answer).toMatchObject({ position: { epoch, offset: 4 }, recovered: true })
    await publish(worker, path, 'm5')
    expect(await receive(back)).toEqual(message(room, 'm5', epoch, 5))
    expect(await receive(bob)).toEqual(message(room, 'm5', epoch, 5))
  }, 40_000)

  it('is gone `ttl` after the last publish: the next publish starts a new epoch, and a returning client is told of the gap', async () => {
    const room = 'short-lived'
    const path = `/rooms/${room}`
    const worker = await start(storageFolder())
    const first = await publish(worker, path, 'old')
    expect(first.offset).toBe(1)
    await sleep(SHORT_TTL_MS + 500)
    const next = await publish(worker, path, 'new')
    expect(next.offset).toBe(1)
    expect(next.epoch).not.toBe(first.epoch)
    const back = await join(worker, path, first)
    const recovery = await subscribed(back)
    expect(recovery.before).toEqual([
      { type: 'gap', topic: room, position: { epoch: next.epoch, offset: 0 }, reason: 'epoch' },
      message(room, 'new', next.epoch, 1),
    ])
    expect(recovery.answer).toMatchObject({ recovered: false })
  })

  it('refuses a message its storage cannot hold (over 2 MB): publish throws a RangeError that says so, nothing is delivered, and positions go on without a hole', async () => {
    const room = 'large'
    const path = `/rooms/${room}`
    const worker = await start(storageFolder())
    const alice = await join(worker, path)
    const epoch = (await subscribed(alice)).answer.position?.epoch as string
    const response = await fetch(`${worker.url}${path}/publish`, {
      method: 'POST',
      body: 'x'.repeat(3 * 1024 * 1024),
    })
    expect(response.status).toBe(413)
    expect(((await response.json()) as { error: string }).error).toMatch(
      /^RangeError: The storage refused a message of topic "large" for its history \(.*SQLITE_TOOBIG\): keep the messages/,
    )
    expect(await publish(worker, path, 'small')).toEqual({ epoch, offset: 1 })
    expect(await receive(alice)).toEqual(message(room, 'small', epoch, 1))
  })

  it('on the older key-value storage (no SQLite), keeps it in memory: after an eviction the epoch changes, and a returning client is told of the gap', async () => {
    const folder = storageFolder()
    const room = 'legacy'
    const path = `/legacy/${room}`
    let worker = await start(folder)
    const first = await publish(worker, path, 'before')
    expect(first.offset).toBe(1)
    // Within one incarnation, the history serves a recovery as anywhere.
    const early = await join(worker, path, { epoch: first.epoch, offset: 0 })
    expect((await subscribed(early)).before).toEqual([message(room, 'before', first.epoch, 1)])

    await stop(worker)
    worker = await start(folder)
    expect(await constructed(worker, path)).toBe(2)
    const after = await publish(worker, path, 'after')
    expect(after.epoch).not.toBe(first.epoch)
    const back = await join(worker, path, first)
    const recovery = await subscribed(back)
    expect(recovery.before[0]).toMatchObject({ type: 'gap', reason: 'epoch' })
    expect(recovery.answer).toMatchObject({ recovered: false })
  })
})
