/**
 * A connection's topics: what it subscribes to, bounded by `maxTopicsPerConnection` and
 * `maxTopicLength`, stored with the socket (a Durable Object's) before anything changes, and
 * mirrored into the runtime's own topic tree where there is one (Bun). A closed connection holds
 * none.
 * @internal
 * @module
 */
import type { Conn } from './conn.js'
import { DATA, HOME, LIMITS, quiet, resolved, SOCKET, STATE, TOPICS } from './conn-fields.js'
import type { MessageData } from './contracts.js'
import { JOIN, LEAVE, PUBLISH_FROM, TREE } from './internal.js'
import { store } from './storage.js'
import { type TopicTree, topicNameError } from './topics.js'

/** The topics of a connection that holds none: one shared, empty set. */
export const NO_TOPICS: ReadonlySet<string> = new Set()

/** `conn.subscribe()`: see its contract there. */
export function subscribe(conn: Conn, topic: string): Promise<void> {
  const limits = conn[LIMITS]
  const refused = topicNameError(topic, limits.maxTopicLength)
  if (refused) return quiet(Promise.reject(refused))
  if (conn[STATE] === 'closed') return resolved
  const held = conn[TOPICS]
  if (held?.has(topic)) return resolved
  if (held && held.size >= limits.maxTopicsPerConnection) {
    return quiet(
      Promise.reject(
        new RangeError(
          `This connection already holds ${held.size} topics, its maxTopicsPerConnection bound: unsubscribe from one first, or raise maxTopicsPerConnection in the upgrade options`,
        ),
      ),
    )
  }
  // Stored before anything changes: a store that throws (synchronously, though subscribe is
  // typed as a promise) leaves the connection as it was, and rejects.
  if (conn[SOCKET].persist) {
    try {
      store(conn, conn[DATA], held ? [...held, topic] : [topic])
    } catch (err) {
      return quiet(Promise.reject(err))
    }
  }
  conn[TOPICS] ??= new Set()
  conn[TOPICS].add(topic)
  if (conn[TREE]) conn[SOCKET].subscribe?.(topic)
  return conn[HOME].hub.topics[JOIN](topic, conn)
}

/** `conn.unsubscribe()`: see its contract there. */
export function unsubscribe(conn: Conn, topic: string): void {
  const held = conn[TOPICS]
  if (!held?.has(topic)) return
  if (conn[SOCKET].persist)
    store(
      conn,
      conn[DATA],
      [...held].filter((t) => t !== topic),
    )
  held.delete(topic)
  if (conn[TREE]) conn[SOCKET].unsubscribe?.(topic)
  conn[HOME].hub.topics[LEAVE](topic, conn)
}

/** `conn.publish()`: see its contract there. */
export function publish(conn: Conn, topic: string, data: MessageData): void {
  // The name bound holds for publishes too: a client that names rooms would otherwise hand
  // the backplane (a Redis channel, its per-topic counts) a name of any length.
  const refused = topicNameError(topic, conn[LIMITS].maxTopicLength)
  if (refused) throw refused
  conn[HOME].hub.topics[PUBLISH_FROM](conn, topic, data)
}

/** Joins the topics a hibernation stored, without storing them again. */
export function rejoin(conn: Conn, topics: readonly string[]): void {
  for (const topic of topics) {
    conn[TOPICS] ??= new Set()
    if (conn[TOPICS].has(topic)) continue
    conn[TOPICS].add(topic)
    void conn[HOME].hub.topics[JOIN](topic, conn)
  }
}

/** The connection closed: it leaves every topic it held. */
export function leaveAll(conn: Conn): void {
  const held = conn[TOPICS]
  if (!held) return
  // Forgotten here, so that an unsubscribe() after the end (a cleanup) cannot leave twice.
  conn[TOPICS] = undefined
  for (const topic of held) conn[HOME].hub.topics[LEAVE](topic, conn)
}

/**
 * The runtime's topic tree, for `Topics`. Not with `slowSubscriber: 'drop'`: a runtime's tree
 * cannot count the messages it drops, so the core sends them itself.
 */
export function treeOf(conn: Conn): TopicTree | undefined {
  return conn[LIMITS].slowSubscriber === 'drop' ? undefined : conn[SOCKET].tree
}

/** Publishes through the runtime's tree, skipping this socket. */
export function publishNative(conn: Conn, topic: string, data: MessageData): void {
  // The runtime skips the sender only on a topic the sender holds (uWS publishes nothing from
  // a socket that holds none); otherwise the sender is not in the topic, and the whole tree
  // gets it. So a publish from a `close` handler still reaches the others.
  if (conn[TOPICS]?.has(topic)) conn[SOCKET].publish?.(topic, data)
  else conn[SOCKET].tree?.publish(topic, data)
}
