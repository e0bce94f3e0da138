/**
 * The backplane port: what a fan-out engine shared by several instances (Redis) implements, and
 * how it talks back to the core. Exported by `@handshake/core/adapter`.
 * @module
 */
import type { MessageData } from './contracts.js'
import type { HistoryOptions, HistoryRead, Position } from './history.js'
import type { PresenceMember } from './presence.js'
import type { Topics } from './topics.js'

/**
 * A fan-out engine shared by several instances of an app (Redis pub/sub, for one). The core
 * calls it; apps only pass one to {@link Topics.useBackplane}. `@handshake/redis` implements it.
 *
 * The contract:
 * - {@link Backplane.subscribe} is called when a topic gets its first local subscriber and
 *   resolves once the engine has confirmed the subscription, so that nothing published after it
 *   resolves is missed. {@link Backplane.unsubscribe} is called when the last one leaves. Calls
 *   for one topic may come in quick succession: the backplane keeps the engine in line with the
 *   latest.
 * - {@link Backplane.publish} sends to the other instances, at most once and in call order. It
 *   never throws for an engine fault: it reports it with {@link BackplaneSink.down}.
 * - Each instance ignores its own messages: the core has delivered them locally already.
 * - After an outage the backplane restores every topic of {@link BackplaneSink.topics} itself,
 *   without trusting its client to do it, then calls {@link BackplaneSink.up}.
 */
export interface Backplane {
  /** Starts the backplane; called once, by {@link Topics.useBackplane}. */
  start(sink: BackplaneSink): void | Promise<void>
  /** Subscribes this instance to a topic; resolves once the engine confirmed it. */
  subscribe(topic: string): Promise<void>
  /** Unsubscribes this instance from a topic. */
  unsubscribe(topic: string): Promise<void>
  /**
   * Sends a message to the subscribers of `topic` on every other instance. `origin` is the
   * publishing connection (undefined for a publish from outside one): an opaque key, compared
   * by identity, so that a bound can be fair per connection. Hold it no longer than needed.
   */
  publish(topic: string, data: MessageData, origin?: object): void
  /** Stops the backplane: it unsubscribes and lets go of the engine's connections it made. */
  close(): Promise<void>
  /** Present when the backplane keeps the history of the topics that have some. */
  readonly history?: BackplaneHistory
  /**
   * Present when the backplane shares presence between instances. Without it, a hub with this
   * backplane lists only its own members (and says so: `topics.presence()` documents it).
   */
  readonly presence?: BackplanePresence
}

/**
 * The presence a {@link Backplane} shares between instances: each instance's members of each
 * topic, with an expiry the instance keeps refreshing, so that the members of an instance that
 * died leave every view within a bound the backplane documents.
 *
 * The contract:
 * - {@link BackplanePresence.join} and {@link BackplanePresence.leave} are called for this
 *   instance's members only; they never throw for an engine fault (they report it with
 *   {@link BackplaneSink.down}) and keep call order per topic.
 * - Every diff about members of other instances reaches {@link BackplaneSink.presence} on every
 *   instance holding the topic: joins and leaves published by those instances, and the leaves
 *   of an instance found dead (reported once, by whichever instance finds it).
 * - This instance's own joins and leaves are not given back: the core has applied them.
 * - After an outage, before {@link BackplaneSink.up}, the backplane asserts again every member
 *   {@link BackplaneSink.members} lists, so that a read after `up()` includes them.
 */
export interface BackplanePresence {
  /** Adds this instance's member to `topic`, or replaces its metadata. */
  join(topic: string, member: PresenceMember): void
  /** Removes this instance's member `id` from `topic`. */
  leave(topic: string, id: string): void
  /**
   * The members of `topic` on every live instance, this one included, each once. Rejects on
   * an engine fault.
   */
  read(topic: string): Promise<PresenceMember[]>
}

/**
 * The history a {@link Backplane} keeps, shared by every instance: it gives each message of a
 * topic that keeps history its position.
 */
export interface BackplaneHistory {
  /**
   * Appends a message to the topic's history and publishes it to every instance, this one
   * included, in one atomic step, so that positions and delivery agree everywhere. This
   * instance's copy comes back through {@link BackplaneSink.message} with `origin`, so that the
   * core can skip the sender. It never throws for an engine fault: it reports it with
   * {@link BackplaneSink.down}. Bounded like {@link Backplane.publish}.
   */
  publish(topic: string, data: MessageData, options: HistoryOptions, origin?: object): void
  /**
   * Reads the topic's history after `since`, at most `limit` messages (with `since` undefined,
   * only the latest position). Rejects on an engine fault.
   */
  read(topic: string, since: Position | undefined, limit: number): Promise<HistoryRead>
}

/** How a {@link Backplane} talks back to the core. */
export interface BackplaneSink {
  /**
   * A message published on another instance (or, for a topic with history, on any instance):
   * delivered to every local subscriber. `position` is set for a topic with history; `origin`
   * for this instance's own message coming back, the object given to
   * {@link BackplaneHistory.publish}.
   */
  message(topic: string, data: MessageData, position?: Position, origin?: object): void
  /**
   * The engine failed. Local delivery goes on; the error is reported once per outage (to
   * `onError`, else the logger), however many times this is called before {@link BackplaneSink.up}.
   */
  down(error: unknown): void
  /** The engine is back and every topic of {@link BackplaneSink.topics} is subscribed again. */
  up(): void
  /** The topics with at least one local subscriber: the ones to restore after an outage. */
  topics(): string[]
  /**
   * Members of `topic` on another instance joined or left (see {@link BackplanePresence}).
   * Ignored for a topic with no local subscriber.
   */
  presence(topic: string, joins: readonly PresenceMember[], leaves: readonly PresenceMember[]): void
  /** This instance's members of `topic`: the ones to assert again after an outage. */
  members(topic: string): PresenceMember[]
}
