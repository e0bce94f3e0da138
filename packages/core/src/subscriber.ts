/**
 * A subscriber as `Topics` sees it (a connection), and a runtime's own topic tree (Bun's).
 * @internal
 * @module
 */
import type { MessageData } from './contracts.js'
import { CHECK_BACKLOG, DELIVER, ENTER_TREE, PUBLISH_NATIVE, TREE } from './internal.js'
import type { Topics } from './topics.js'

/**
 * One subscriber, as {@link Topics} sees it: a connection. Internal to the core.
 * @internal
 */
export interface Subscriber {
  /**
   * Delivers a published message; never waits and never throws. False when it was not sent
   * (dropped past the publish bound, or the connection is closing). `notice` frames what is sent
   * just before `data`, called only when `data` is sent; `always` sends past the bound under `slowSubscriber: 'drop'`.
   */
  [DELIVER](data: MessageData, notice?: () => MessageData | undefined, always?: boolean): boolean
  /** The runtime's own topic tree this subscriber belongs to (Bun), if any. */
  readonly [TREE]: TopicTree | undefined
  /** Publishes through the runtime's tree to every subscriber but this one (Bun). */
  [PUBLISH_NATIVE](topic: string, data: MessageData): void
  /**
   * The runtime's tree sent to this subscriber without the core: applies the slow-subscriber
   * bound to what the runtime now holds unsent for it.
   */
  [CHECK_BACKLOG](): void
  /** Joins the runtime's tree for `topic` (Bun): the core lets it go live there. */
  [ENTER_TREE](topic: string): void
}

/** A runtime's own topic fan-out (Bun's `server.publish`), as an adapter exposes it. */
export interface TopicTree {
  /** Sends `data` to every socket of this tree subscribed to `topic`. */
  publish(topic: string, data: MessageData): void
}
