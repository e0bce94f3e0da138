/**
 * The presence frames of the channel protocol: for each hub, the channel connections that get a
 * topic's presence, and the diffs of its view sent to them. A subscriber gets the full state
 * once its subscription is made, computed at the moment it is sent, and from then on every
 * diff: none is lost or sent twice relative to the state. Kept in memory: a hibernation's wake
 * gives every connection back (`WAKE`), without a state frame (its client has one).
 * @internal
 * @module
 */
import type { Conn } from './conn.js'
import { PRESENCE } from './conn-fields.js'
import { PRESENCE_VIEW } from './internal.js'
import type { PresenceEvent, PresenceMember } from './presence.js'
import type { Topics } from './topics.js'

/** The channel connections of one hub that get presence frames, per topic. */
class Watchers {
  readonly #topics: Topics
  readonly #byTopic = new Map<string, Set<Conn>>()
  readonly #byConn = new WeakMap<Conn, Set<string>>()

  constructor(topics: Topics) {
    this.#topics = topics
    topics.addEventListener('presence', (event) => this.#diff(event as PresenceEvent))
  }

  /** `conn` gets `topic`'s diffs from now on; returns the state frame to send it now. */
  add(conn: Conn, topic: string): string {
    this.watch(conn, topic)
    const view = this.#topics[PRESENCE_VIEW](topic)
    const id = conn[PRESENCE]
    const self = id !== undefined && view.local.has(id) ? id : undefined
    return stateFrame(topic, [...view.members.values()], self)
  }

  /** `conn` gets `topic`'s diffs from now on (a woken connection: its client has the state). */
  watch(conn: Conn, topic: string): void {
    let conns = this.#byTopic.get(topic)
    if (!conns) {
      conns = new Set()
      this.#byTopic.set(topic, conns)
    }
    conns.add(conn)
    let topics = this.#byConn.get(conn)
    if (!topics) {
      topics = new Set()
      this.#byConn.set(conn, topics)
    }
    topics.add(topic)
  }

  /** `conn` gets no more of `topic`'s frames (every topic's, without one). */
  remove(conn: Conn, topic?: string): void {
    const topics = this.#byConn.get(conn)
    if (!topics) return
    for (const name of topic === undefined ? [...topics] : [topic]) {
      topics.delete(name)
      const conns = this.#byTopic.get(name)
      conns?.delete(conn)
      if (conns?.size === 0) this.#byTopic.delete(name)
    }
    if (topics.size === 0) this.#byConn.delete(conn)
  }

  #diff(event: PresenceEvent): void {
    const conns = this.#byTopic.get(event.topic)
    if (!conns) return
    const text = JSON.stringify({
      type: 'presence',
      topic: event.topic,
      joins: event.joins,
      leaves: event.leaves,
    })
    for (const conn of conns) {
      // One that left the topic another way (the app's own unsubscribe, a close) is forgotten.
      if (conn.state !== 'open' || !conn.topics.has(event.topic)) this.remove(conn, event.topic)
      else conn.send(text).catch(() => {})
    }
  }
}

const watchers = new WeakMap<Topics, Watchers>()

/** The presence frames of a hub's channel connections. */
export function watchersOf(topics: Topics): Watchers {
  let found = watchers.get(topics)
  if (!found) {
    found = new Watchers(topics)
    watchers.set(topics, found)
  }
  return found
}

/** The full state frame: every member, and the subscriber's own id when it is one. */
function stateFrame(
  topic: string,
  members: readonly PresenceMember[],
  self: string | undefined,
): string {
  return JSON.stringify(
    self === undefined
      ? { type: 'presence', topic, members }
      : { type: 'presence', topic, members, self },
  )
}
