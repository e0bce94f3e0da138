/**
 * Positions and history: the types a topic that keeps history speaks in, and the store a hub
 * keeps it in when no backplane does.
 * @module
 */

import type { MessageData } from './contracts.js'
import type { PresenceMeta } from './presence.js'

/**
 * Where a message sits in its topic's history. Offsets start at 1 in each epoch and grow by
 * exactly one per message, across every instance that shares the history; the epoch changes
 * when the history was lost (a store that restarted empty, a history that expired), so a
 * position of another epoch no longer means anything.
 */
export interface Position {
  /** The history's incarnation: compare it before trusting the offset. */
  readonly epoch: string
  /** The message's number in its epoch, from 1. */
  readonly offset: number
}

/** How much history a topic keeps: see `topics.useHistory()`. */
export interface HistoryOptions {
  /** The most messages kept; the oldest go first. At least 1. */
  readonly size: number
  /**
   * How long, in milliseconds, the history is kept after the topic's last publish. Then it is
   * gone, and the topic's next publish starts a new epoch.
   */
  readonly ttl: number
}

/**
 * What a subscriber is sent: a published message (with its position when its topic keeps
 * history), or the notice of a gap it can no longer recover.
 */
export type Delivery =
  | {
      readonly type: 'message'
      readonly topic: string
      readonly data: MessageData
      /** Undefined for a topic without history. */
      readonly position: Position | undefined
    }
  | {
      readonly type: 'gap'
      readonly topic: string
      /** Where the subscriber goes on from. */
      readonly position: Position
      /** `'trimmed'`: the history no longer reaches back; `'epoch'`: the history was lost. */
      readonly reason: 'trimmed' | 'epoch'
    }

/** A topic's history as a store reads it. */
export interface HistoryRead {
  /** The history's epoch. */
  readonly epoch: string
  /** The topic's latest offset in this epoch; 0 when nothing was published in it yet. */
  readonly offset: number
  /**
   * The messages after the position asked for, in order, at most the limit asked for: from the
   * oldest kept when that position is of another epoch or older than the oldest kept.
   */
  readonly messages: ReadonlyArray<{
    readonly offset: number
    readonly data: MessageData
    /**
     * Set by a backplane for this instance's own publish whose copy did not come back through
     * `BackplaneSink.message` (its subscriber connection was lost meanwhile): the `origin`
     * given to `history.publish()`, so that the sender is skipped as for a live copy.
     */
    readonly origin?: object
  }>
  /** True when the messages start right after the position asked for. */
  readonly complete: boolean
}

/**
 * Where a hub keeps history when its backplane keeps none: memory (the default), or a Durable
 * Object's storage.
 */
export interface HistoryStore {
  /** Appends a message to the topic's history and returns its position. */
  append(topic: string, data: MessageData, options: HistoryOptions): Position
  /**
   * Reads the topic's history after `since`, at most `limit` messages; with `since` undefined,
   * only the latest position.
   */
  read(
    topic: string,
    since: Position | undefined,
    limit: number,
  ): HistoryRead | Promise<HistoryRead>
}

/** What `topics.useHistory()` takes. */
export interface TopicsHistoryOptions {
  /**
   * Which topics keep history, and how much: `{ size, ttl }` for a topic that keeps some,
   * undefined for one that keeps none (the default). Asked once per topic while it has local
   * subscribers, and on each publish to a topic that has none here: answer the same for a
   * topic each time.
   */
  history: (topic: string) => HistoryOptions | undefined
  /**
   * How a subscriber receives a delivery: the raw data of a message by default, and nothing for
   * a gap. Called once per delivery per hub, not per subscriber: every subscriber is sent the
   * same framed data. Return undefined to send nothing.
   * @example
   * ```ts
   * frame: (d) => JSON.stringify(d.type === 'message' ? { ...d, data: String(d.data) } : d)
   * ```
   */
  frame?: (delivery: Delivery) => MessageData | undefined
}

/** What `conn.subscribe(topic, options)` takes. */
export interface SubscribeOptions {
  /**
   * Deliver every message after this position first, in order, each once, before any newer
   * one: the position of the last message the subscriber was given (on an earlier connection).
   * Undefined (or absent): no recovery, the subscriber starts from the topic's latest position.
   */
  since?: Position | undefined
  /**
   * Join the topic's presence with this metadata (JSON, at most 1 KiB as UTF-8 text): the
   * connection is listed by `topics.presence(topic)` on every instance until it unsubscribes
   * or closes. Subscribing again while subscribed with other metadata replaces it (a leave and
   * a join in one `'presence'` event). Undefined (or absent): subscribe without being listed (a
   * connection listed already stays listed: unsubscribe to leave).
   */
  presence?: PresenceMeta | undefined
}

/** What `conn.subscribe()` resolves to. */
export interface Subscription {
  /**
   * The position of the last message this subscriber has been given, or where it starts:
   * undefined for a topic without history.
   */
  readonly position: Position | undefined
  /**
   * False when `since` was given and not every message after it could be delivered: the
   * history no longer reaches back, the epoch changed, or the history could not be read. True
   * otherwise. The subscriber was also sent the framed gap notice, when a position was known.
   */
  readonly recovered: boolean
}

/**
 * The `'gap'` event of `Topics`: messages of a topic that keeps history were published on
 * another instance, did not arrive here, and could not be read back from the history (it was
 * trimmed past them, or lost: a store that restarted empty). Each local subscriber of the topic
 * was also sent the framed gap notice.
 */
export class GapEvent extends Event {
  /**
   * @param topic - the topic
   * @param position - where its subscribers go on from
   * @param reason - `'trimmed'` or `'epoch'`
   * @param lost - how many messages were lost, when known
   */
  constructor(
    readonly topic: string,
    readonly position: Position,
    readonly reason: 'trimmed' | 'epoch',
    readonly lost: number | undefined,
  ) {
    super('gap')
  }
}

/**
 * Checks what `history(topic)` answered: undefined, or whole `size` >= 1 and finite `ttl` > 0.
 * @internal
 */
export function checkHistoryOptions(
  topic: string,
  options: HistoryOptions | undefined,
): HistoryOptions | undefined {
  if (options === undefined) return undefined
  const size = options?.size
  const ttl = options?.ttl
  if (!Number.isSafeInteger(size) || size < 1) {
    throw new RangeError(
      `history('${topic}') answered size ${String(size)}: the most messages kept is a whole number of at least 1 (or answer undefined for a topic without history)`,
    )
  }
  if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl <= 0) {
    throw new RangeError(
      `history('${topic}') answered ttl ${String(ttl)}: how long a history is kept after its topic's last publish is a finite number of milliseconds above 0`,
    )
  }
  return options
}

/** A fresh epoch: 64 random bits, as 16 hex digits. @internal */
export function newEpoch(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8))
  let epoch = ''
  for (const byte of bytes) epoch += byte.toString(16).padStart(2, '0')
  return epoch
}

/** How often, at most, a publish to the memory store drops the expired histories. */
const SWEEP_INTERVAL_MS = 1000

/** One topic's history in memory: a ring of at most `size` messages. */
interface Kept {
  readonly epoch: string
  /** The latest offset. */
  offset: number
  /** The messages, oldest at `head` once the ring is full. */
  readonly ring: MessageData[]
  head: number
  size: number
  ttl: number
  /** When it is gone: `ttl` after the last publish (or after it was made). */
  expires: number
}

/**
 * The memory store: per topic, a ring of its last `size` messages, its epoch and its latest
 * offset. A topic's history is dropped `ttl` after its last publish, with no timer: an expired
 * history is seen as gone whenever its topic is read or published, and a publish or a read at
 * most once a second drops every expired one, so memory follows the live topics.
 * @internal
 */
export class MemoryHistory implements HistoryStore {
  readonly #topics = new Map<string, Kept>()
  // When the next publish looks for expired histories.
  #nextSweep = 0
  readonly #optionsOf: (topic: string) => HistoryOptions | undefined

  /**
   * @param optionsOf - the options of a topic that is read before its first publish, so that
   *   the epoch it reads is the one its first message gets
   */
  constructor(optionsOf: (topic: string) => HistoryOptions | undefined = () => undefined) {
    this.#optionsOf = optionsOf
  }

  append(topic: string, data: MessageData, options: HistoryOptions): Position {
    const now = Date.now()
    if (now >= this.#nextSweep) this.#sweep(now)
    let kept = this.#live(topic, now)
    if (!kept) {
      kept = this.#make(options, now)
      this.#topics.set(topic, kept)
    } else if (kept.offset === 0) {
      // Read before its first message: it keeps its epoch, and takes the options now.
      kept.size = options.size
      kept.ttl = options.ttl
    }
    kept.offset++
    kept.expires = now + kept.ttl
    if (kept.ring.length < kept.size) kept.ring.push(data)
    else {
      kept.ring[kept.head] = data
      kept.head = (kept.head + 1) % kept.size
    }
    return { epoch: kept.epoch, offset: kept.offset }
  }

  read(topic: string, since: Position | undefined, limit: number): HistoryRead {
    const now = Date.now()
    // Reads make histories too (a topic subscribed to before its first publish): they sweep as
    // publishes do, or a hub whose topics are only read would keep every one it ever read.
    if (now >= this.#nextSweep) this.#sweep(now)
    let kept = this.#live(topic, now)
    if (!kept) {
      // Made now, so that the first message gets the epoch this read reports.
      const options = this.#optionsOf(topic) ?? { size: 1, ttl: Number.POSITIVE_INFINITY }
      kept = this.#make(options, now)
      this.#topics.set(topic, kept)
    }
    const { epoch, offset, ring } = kept
    if (since === undefined) return { epoch, offset, messages: [], complete: true }
    const oldest = offset - ring.length + 1
    const complete = since.epoch === epoch && since.offset >= oldest - 1 && since.offset <= offset
    const from = complete ? since.offset + 1 : oldest
    const to = Math.min(offset, from + Math.max(0, limit) - 1)
    const messages: { offset: number; data: MessageData }[] = []
    for (let at = from; at <= to; at++) {
      const index = (kept.head + (at - oldest)) % ring.length
      messages.push({ offset: at, data: ring[index] as MessageData })
    }
    return { epoch, offset, messages, complete }
  }

  #make(options: HistoryOptions, now: number): Kept {
    return {
      epoch: newEpoch(),
      offset: 0,
      ring: [],
      head: 0,
      size: options.size,
      ttl: options.ttl,
      expires: now + options.ttl,
    }
  }

  /** The topic's history, unless it has expired (then it is dropped). */
  #live(topic: string, now: number): Kept | undefined {
    const kept = this.#topics.get(topic)
    if (kept && kept.expires <= now) {
      this.#topics.delete(topic)
      return undefined
    }
    return kept
  }

  /** Drops every expired history; the next sweep is a second later at the earliest. */
  #sweep(now: number): void {
    this.#nextSweep = now + SWEEP_INTERVAL_MS
    for (const [topic, kept] of this.#topics) if (kept.expires <= now) this.#topics.delete(topic)
  }

  /** How many topics it holds (expired ones included, until they are dropped). @internal */
  get size(): number {
    return this.#topics.size
  }
}
