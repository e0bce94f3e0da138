/**
 * The backplane port: what a fan-out engine shared by several instances (Redis) implements, and
 * how it talks back to the core. Exported by `@handshake/core/adapter`.
 * @module
 */
import type { MessageData } from './contracts.js'
import type { HistoryOptions, HistoryRead, Position } from './history.js'
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
}
