/**
 * A {@link HistoryStore} kept in a synchronous key-value storage: a Durable Object's
 * `ctx.storage.kv`, so that a topic's history and positions survive the object's hibernation and
 * eviction. Runtime-free: the storage is described by what the store calls of it.
 * @module
 */
import type { MessageData } from './contracts.js'
import {
  type HistoryOptions,
  type HistoryRead,
  type HistoryStore,
  newEpoch,
  type Position,
} from './history.js'

/**
 * A synchronous, ordered key-value storage, as far as {@link StoredHistory} uses it: a SQLite-backed
 * Durable Object's `ctx.storage.kv` is one. Values are stored by structured clone.
 */
export interface SyncStorage {
  /** The value stored under `key`; undefined when none is. */
  get(key: string): unknown
  /** Stores `value` under `key`. */
  put(key: string, value: unknown): void
  /** Deletes `key`; true when it was stored. */
  delete(key: string): boolean
  /** The entries whose key starts with `prefix`, in key order, from `start` (inclusive). */
  list(options: { prefix: string; start?: string; limit?: number }): Iterable<[string, unknown]>
}

/** What the storage holds for a topic, beside its messages. */
interface Meta {
  /** The history's epoch. */
  readonly epoch: string
  /** The latest offset; 0 until the epoch's first message. */
  offset: number
  /** The oldest offset kept. */
  first: number
  /** When the history is gone (ms since the epoch of `Date.now()`). */
  expires: number
}

/** Where the store's keys start in the storage, unless told otherwise. */
const DEFAULT_PREFIX = 'handshake:history:'
/**
 * How long a history that was read but never published to keeps its epoch (the epoch a
 * subscriber was given), when no publish said the topic's `ttl`: a day, as in Redis.
 */
const UNPUBLISHED_TTL = 24 * 60 * 60 * 1000
/** How often, at most, an append sweeps the other topics' expired histories from the storage. */
const SWEEP_INTERVAL = 60 * 1000
/** Offsets are written in 16 digits (all of `Number.MAX_SAFE_INTEGER`), so that keys sort. */
const OFFSET_DIGITS = 16

const pad = (offset: number) => String(offset).padStart(OFFSET_DIGITS, '0')

/**
 * A {@link HistoryStore} over a synchronous key-value storage ({@link SyncStorage}): each
 * message is written when it is appended, so `append` returns its position at once, and what a
 * runtime commits with the storage (a Durable Object's output gate holds every outgoing message
 * until its writes are durable) keeps history and deliveries in agreement.
 *
 * - The storage holds, per topic, its epoch, latest offset, oldest offset kept and expiry (under
 *   `{prefix}m:{topic}`) and at most `size` messages (under `{prefix}e:{length}:{topic}:{offset}`).
 *   The topics' epochs and offsets are also kept in memory, read from the storage on first use.
 * - A history is gone `ttl` after its topic's last publish. That is checked when the topic is
 *   used (no alarm: a Durable Object has one, and it is the app's); an append also sweeps the
 *   other topics' expired histories from the storage, at most once a minute.
 * - A topic read before its first publish gets its epoch then, kept for its next publish (for
 *   a day, unless a publish said its `ttl`), so that a subscriber's position stays good.
 */
export class StoredHistory implements HistoryStore {
  readonly #storage: SyncStorage
  readonly #prefix: string
  readonly #now: () => number
  /** The topics' histories read or written in this incarnation. */
  readonly #metas = new Map<string, Meta>()
  #nextSweep = 0

  /**
   * @param storage - the storage: a SQLite-backed Durable Object's `ctx.storage.kv`
   * @param options - `prefix`: where the store's keys start (default `handshake:history:`);
   *   `now`: the clock (tests)
   */
  constructor(storage: SyncStorage, options: { prefix?: string; now?: () => number } = {}) {
    this.#storage = storage
    this.#prefix = options.prefix ?? DEFAULT_PREFIX
    this.#now = options.now ?? Date.now
  }

  /** Appends `data` to the topic's history and returns its position. */
  append(topic: string, data: MessageData, options: HistoryOptions): Position {
    const now = this.#now()
    if (now >= this.#nextSweep) {
      this.#nextSweep = now + SWEEP_INTERVAL
      this.#sweep(now)
    }
    const meta = this.#live(topic, now) ?? this.#create(topic)
    const offset = meta.offset + 1
    // The message first: a storage that refuses it (too large) leaves the history as it was.
    try {
      this.#storage.put(this.#entryKey(topic, offset), data)
    } catch (err) {
      throw new RangeError(
        `The storage refused a message of topic "${topic}" for its history (${err instanceof Error ? err.message : String(err)}): keep the messages of a topic with history small (a Durable Object stores at most 2 MB per message)`,
        { cause: err },
      )
    }
    meta.offset = offset
    const first = Math.max(meta.first, offset - Math.max(1, Math.floor(options.size)) + 1)
    for (let trimmed = meta.first; trimmed < first; trimmed++) {
      this.#storage.delete(this.#entryKey(topic, trimmed))
    }
    meta.first = first
    meta.expires = now + options.ttl
    this.#storage.put(this.#metaKey(topic), meta)
    return { epoch: meta.epoch, offset }
  }

  /** Reads the topic's history after `since`, at most `limit` messages. */
  read(topic: string, since: Position | undefined, limit: number): HistoryRead {
    const meta = this.#live(topic, this.#now()) ?? this.#create(topic)
    const { epoch, offset } = meta
    if (!since) return { epoch, offset, messages: [], complete: true }
    const sameEpoch = since.epoch === epoch
    const from = sameEpoch ? Math.max(since.offset + 1, meta.first) : meta.first
    // A position past the latest is one this history never gave: not a recovery.
    const complete = sameEpoch && since.offset + 1 >= meta.first && since.offset <= offset
    const messages: { offset: number; data: MessageData }[] = []
    if (from > offset || limit <= 0) return { epoch, offset, messages, complete }
    const entries = this.#storage.list({
      prefix: this.#entryPrefix(topic),
      start: this.#entryKey(topic, from),
      limit: Math.min(limit, offset - from + 1),
    })
    let expected = from
    for (const [key, data] of entries) {
      const at = Number(key.slice(-OFFSET_DIGITS))
      // A message the storage lost: what follows is not right after what came before.
      if (at !== expected) break
      messages.push({ offset: at, data: data as MessageData })
      expected++
    }
    const whole = messages.length === Math.min(limit, offset - from + 1)
    return { epoch, offset, messages, complete: complete && whole }
  }

  /** The topic's history, unless it has expired (then it is removed). */
  #live(topic: string, now: number): Meta | undefined {
    let meta = this.#metas.get(topic)
    if (!meta) {
      meta = this.#storage.get(this.#metaKey(topic)) as Meta | undefined
      if (meta) this.#metas.set(topic, meta)
    }
    if (meta && now >= meta.expires) {
      this.#remove(topic, meta)
      return undefined
    }
    return meta
  }

  /** A new epoch for the topic, whose old history is gone. */
  #create(topic: string): Meta {
    const meta: Meta = {
      epoch: newEpoch(),
      offset: 0,
      first: 1,
      expires: this.#now() + UNPUBLISHED_TTL,
    }
    this.#metas.set(topic, meta)
    this.#storage.put(this.#metaKey(topic), meta)
    return meta
  }

  #remove(topic: string, meta: Meta): void {
    for (let offset = meta.first; offset <= meta.offset; offset++) {
      this.#storage.delete(this.#entryKey(topic, offset))
    }
    this.#storage.delete(this.#metaKey(topic))
    this.#metas.delete(topic)
  }

  /** Removes every expired history from the storage. */
  #sweep(now: number): void {
    const prefix = `${this.#prefix}m:`
    const expired: [string, Meta][] = []
    for (const [key, value] of this.#storage.list({ prefix })) {
      const meta = value as Meta
      if (now >= meta.expires) expired.push([key.slice(prefix.length), meta])
    }
    for (const [topic, meta] of expired) this.#remove(topic, meta)
  }

  #metaKey(topic: string): string {
    return `${this.#prefix}m:${topic}`
  }

  #entryPrefix(topic: string): string {
    // The topic's length first: no topic's entries start with another topic's prefix.
    return `${this.#prefix}e:${topic.length}:${topic}:`
  }

  #entryKey(topic: string, offset: number): string {
    return `${this.#entryPrefix(topic)}${pad(offset)}`
  }
}
