/**
 * StoredHistory, the history a Durable Object keeps in its storage, over a fake synchronous
 * storage that clones what it stores, as workerd's does. In workerd: the adapter's object tests.
 */
import { describe, expect, it } from 'vitest'
import { StoredHistory, type SyncStorage } from '../src/adapter.js'
import { MemoryHistory } from '../src/history.js'

/** An ordered, synchronous key-value storage that stores clones, like `ctx.storage.kv`. */
class FakeStorage implements SyncStorage {
  readonly map = new Map<string, unknown>()
  refuse: ((value: unknown) => boolean) | undefined
  get(key: string): unknown {
    const value = this.map.get(key)
    return value === undefined ? undefined : structuredClone(value)
  }
  put(key: string, value: unknown): void {
    if (this.refuse?.(value)) throw new RangeError('value too large')
    this.map.set(key, structuredClone(value))
  }
  delete(key: string): boolean {
    return this.map.delete(key)
  }
  *list(options: { prefix: string; start?: string; limit?: number }): Iterable<[string, unknown]> {
    const keys = [...this.map.keys()].filter(
      (key) =>
        key.startsWith(options.prefix) && (options.start === undefined || key >= options.start),
    )
    keys.sort()
    let n = 0
    for (const key of keys) {
      if (options.limit !== undefined && n++ >= options.limit) return
      yield [key, structuredClone(this.map.get(key))]
    }
  }
}

const options = { size: 3, ttl: 10_000 }

function setup() {
  const storage = new FakeStorage()
  const clock = { now: 1_000_000 }
  const store = () => new StoredHistory(storage, { now: () => clock.now })
  return { storage, clock, store }
}

describe('StoredHistory', () => {
  it('gives each message the next offset of one epoch, and reads after a position in order', () => {
    const { store } = setup()
    const history = store()
    const first = history.append('room', 'a', options)
    expect(first.offset).toBe(1)
    expect(first.epoch).toMatch(/^[0-9a-f]{16}$/)
    expect(history.append('room', 'b', options)).toEqual({ epoch: first.epoch, offset: 2 })
    expect(history.append('room', 'c', options)).toEqual({ epoch: first.epoch, offset: 3 })
    expect(history.read('room', undefined, 100)).toEqual({
      epoch: first.epoch,
      offset: 3,
      messages: [],
      complete: true,
    })
    expect(history.read('room', first, 100)).toEqual({
      epoch: first.epoch,
      offset: 3,
      messages: [
        { offset: 2, data: 'b' },
        { offset: 3, data: 'c' },
      ],
      complete: true,
    })
    // At most `limit`, from right after the position: still complete.
    expect(history.read('room', first, 1)).toMatchObject({
      messages: [{ offset: 2, data: 'b' }],
      complete: true,
    })
    expect(history.read('room', { epoch: first.epoch, offset: 3 }, 100)).toMatchObject({
      messages: [],
      complete: true,
    })
    // A position this history never gave is not recovered from.
    expect(history.read('room', { epoch: first.epoch, offset: 4 }, 100)).toMatchObject({
      messages: [],
      complete: false,
    })
  })

  it('keeps at most `size` messages: a position older than the oldest kept reads incomplete', () => {
    const { store, storage } = setup()
    const history = store()
    const positions = ['a', 'b', 'c', 'd', 'e'].map((data) => history.append('room', data, options))
    const read = history.read('room', positions[0], 100)
    expect(read.complete).toBe(false)
    expect(read.messages).toEqual([
      { offset: 3, data: 'c' },
      { offset: 4, data: 'd' },
      { offset: 5, data: 'e' },
    ])
    // The trimmed messages are gone from the storage too: three messages and the topic's record.
    expect(storage.map.size).toBe(3 + 1)
    expect(history.read('room', positions[1], 100).complete).toBe(true)
  })

  it('survives the object: a new store over the same storage goes on from the same position (eviction)', () => {
    const { store } = setup()
    const before = store()
    const first = before.append('room', 'a', options)
    before.append('room', new Uint8Array([1, 2, 3]), options)
    const after = store()
    const read = after.read('room', first, 100)
    expect(read).toMatchObject({ epoch: first.epoch, offset: 2, complete: true })
    expect(read.messages).toHaveLength(1)
    expect(read.messages[0]?.data).toEqual(new Uint8Array([1, 2, 3]))
    expect(after.append('room', 'c', options)).toEqual({ epoch: first.epoch, offset: 3 })
  })

  it('is gone `ttl` after the last publish: the next publish starts a new epoch at offset 1', () => {
    const { store, clock } = setup()
    const history = store()
    const first = history.append('room', 'a', options)
    clock.now += 9_000
    history.append('room', 'b', options)
    // 9 s after the last publish: still there.
    clock.now += 9_000
    expect(history.read('room', first, 100).messages).toEqual([{ offset: 2, data: 'b' }])
    clock.now += 1_000
    const read = history.read('room', first, 100)
    expect(read.epoch).not.toBe(first.epoch)
    expect(read).toMatchObject({ offset: 0, messages: [], complete: false })
    // The epoch a reader was given is the one the next publish uses, in this object or the next.
    expect(store().append('room', 'c', options)).toEqual({ epoch: read.epoch, offset: 1 })
  })

  it('gives a topic read before its first publish the epoch its first publish uses', () => {
    const { store } = setup()
    const read = store().read('fresh', undefined, 100)
    expect(read).toMatchObject({ offset: 0, messages: [], complete: true })
    const position = store().append('fresh', 'a', options)
    expect(position).toEqual({ epoch: read.epoch, offset: 1 })
    expect(store().read('fresh', { epoch: read.epoch, offset: 0 }, 100)).toMatchObject({
      messages: [{ offset: 1, data: 'a' }],
      complete: true,
    })
  })

  // As the memory store: a position past the latest was not given by this history (it lost
  // its latest writes), so the read cannot say it holds everything after it.
  it('reads a position ahead of its latest as incomplete, as the memory store does', () => {
    const { store } = setup()
    const history = store()
    const { epoch } = history.append('room', 'a', options)
    history.append('room', 'b', options)
    const read = history.read('room', { epoch, offset: 5 }, 100)
    expect(read).toMatchObject({ epoch, offset: 2, complete: false })
    const memory = new MemoryHistory(() => options)
    const at = memory.append('room', 'a', options)
    expect(memory.read('room', { epoch: at.epoch, offset: 5 }, 100).complete).toBe(false)
  })

  it('reads a position of another epoch from the oldest kept, incomplete', () => {
    const { store } = setup()
    const history = store()
    const { epoch } = history.append('room', 'a', options)
    history.append('room', 'b', options)
    const read = history.read('room', { epoch: 'elsewhere', offset: 1 }, 100)
    expect(read).toMatchObject({ epoch, offset: 2, complete: false })
    expect(read.messages.map((m) => m.offset)).toEqual([1, 2])
  })

  it("sweeps other topics' expired histories from the storage on a later append", () => {
    const { store, storage, clock } = setup()
    const history = store()
    history.append('old', 'a', options)
    history.append('old', 'b', options)
    clock.now += 60_000
    history.append('new', 'c', options)
    expect([...storage.map.keys()].filter((key) => key.includes('old'))).toEqual([])
    expect(storage.map.size).toBe(2)
  })

  it('keeps topics apart whose names start alike, and keeps its keys under its prefix', () => {
    const { storage, clock } = setup()
    const history = new StoredHistory(storage, { prefix: 'mine/', now: () => clock.now })
    history.append('a', 'in a', options)
    history.append('a:00', 'in a:00', options)
    history.append('a:00', 'again', options)
    const { epoch } = history.read('a', undefined, 1)
    expect(history.read('a', { epoch, offset: 0 }, 100).messages).toEqual([
      { offset: 1, data: 'in a' },
    ])
    expect([...storage.map.keys()].every((key) => key.startsWith('mine/'))).toBe(true)
  })

  it('leaves the history as it was when the storage refuses a message', () => {
    const { store, storage } = setup()
    const history = store()
    const first = history.append('room', 'a', options)
    storage.refuse = (value) => value === 'huge'
    expect(() => history.append('room', 'huge', options)).toThrow(
      /^The storage refused a message of topic "room" for its history \(value too large\): keep/,
    )
    storage.refuse = undefined
    expect(history.append('room', 'b', options)).toEqual({ epoch: first.epoch, offset: 2 })
    expect(store().read('room', first, 100).messages).toEqual([{ offset: 2, data: 'b' }])
  })

  it('reads incomplete, never past a hole, when the storage lost a message', () => {
    const { store, storage } = setup()
    const history = store()
    const first = history.append('room', 'a', { size: 10, ttl: 10_000 })
    history.append('room', 'b', { size: 10, ttl: 10_000 })
    history.append('room', 'c', { size: 10, ttl: 10_000 })
    for (const key of storage.map.keys()) if (key.endsWith('0002')) storage.map.delete(key)
    expect(history.read('room', first, 100)).toMatchObject({ messages: [], complete: false })
  })
})
