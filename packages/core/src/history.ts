/**
 * Positions and history: the types a topic that keeps history speaks in, and the store a hub
 * keeps it in when no backplane does.
 * @module
 */
import type { MessageData } from './contracts.js'

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
