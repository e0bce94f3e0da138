/**
 * Presence: who is in a topic. A connection becomes a member of a topic by subscribing with
 * metadata (`conn.subscribe(topic, { presence: meta })`); it leaves when it unsubscribes or
 * closes. `topics.presence(topic)` lists the members of every instance; the `'presence'` event
 * of `Topics` carries joins and leaves as diffs.
 * @module
 */

/** A JSON value: what a member's metadata may hold. */
export type PresenceMeta =
  | null
  | boolean
  | number
  | string
  | PresenceMeta[]
  | { [key: string]: PresenceMeta }

/** The most bytes a member's metadata takes as UTF-8 JSON text. */
export const MAX_PRESENCE_META_BYTES = 1024

/** One member of a topic: one connection, on any instance. */
export interface PresenceMember {
  /**
   * Unique among the members of every topic of every instance, and stable for the connection's
   * life (across a Durable Object's hibernation too). Two members never share it, so a member
   * is never listed twice.
   */
  readonly id: string
  /** The metadata it joined with (the last it joined with, when it joined again). */
  readonly meta: PresenceMeta
}

/**
 * The `'presence'` event of `Topics`: members joined or left `topic`, on this instance or
 * another. A member whose metadata changed leaves and joins again in the same event (Phoenix's
 * convention). After a backplane outage the core reads every held topic's members again and
 * fires the difference, so that a view kept from these events converges.
 */
export class PresenceEvent extends Event {
  /**
   * @param topic - the topic
   * @param joins - the members that joined (or joined again with new metadata)
   * @param leaves - the members that left (or left with their old metadata)
   */
  constructor(
    readonly topic: string,
    readonly joins: readonly PresenceMember[],
    readonly leaves: readonly PresenceMember[],
  ) {
    super('presence')
  }
}
