/**
 * A connection's topics: what it subscribes to, bounded by `maxTopicsPerConnection` and
 * `maxTopicLength`, stored with the socket (a Durable Object's) before anything changes, and
 * mirrored into the runtime's own topic tree where there is one (Bun). A closed connection holds
 * none.
 * @internal
 * @module
 */
import type { Conn } from './conn.js'
import { DATA, HOME, LIMITS, PRESENCE, quiet, SOCKET, STATE, TOPICS } from './conn-fields.js'
import type { MessageData } from './contracts.js'
import type { SubscribeOptions, Subscription } from './history.js'
import { HELD, HISTORY_OF, JOIN, LEAVE, MEMBER_OF, PUBLISH_FROM, REJOIN, TREE } from './internal.js'
import type { ConnSnapshot } from './port.js'
import { checkPresenceMeta, type PresenceMember } from './presence.js'
import { store } from './storage.js'
import { type TopicTree, topicNameError } from './topics.js'

/**
 * What a connection's presence stores: its id and its metadata per topic, as they are, or with
 * `topic`'s member replaced (`member`) or removed (`null`). Its members are the hub's.
 */
export function presenceSnapshot(
  conn: Conn,
  topic?: string,
  member?: PresenceMember | null,
): ConnSnapshot['presence'] {
  const id = conn[PRESENCE] ?? member?.id
  if (id === undefined) return undefined
  const topics: Record<string, PresenceMember['meta']> = {}
  const hub = conn[HOME].hub.topics
  for (const name of conn[TOPICS] ?? NO_TOPICS) {
    const joined = name === topic ? undefined : hub[MEMBER_OF](name, id)
    if (joined) topics[name] = joined.meta
  }
  if (topic !== undefined && member) topics[topic] = member.meta
  return { id, topics }
}

/**
 * A new member id: random, and one flat string (Node's `randomUUID()` answers a rope of a dozen
 * pieces, which would take some 400 bytes per connection for as long as it lives).
 */
function newMemberId(): string {
  return JSON.parse(JSON.stringify(crypto.randomUUID())) as string
}

/** The topics of a connection that holds none: one shared, empty set. */
export const NO_TOPICS: ReadonlySet<string> = new Set()

const NOTHING: Promise<Subscription> = Promise.resolve(
  Object.freeze({ position: undefined, recovered: true }),
)
const NOTHING_RECOVERED: Promise<Subscription> = Promise.resolve(
  Object.freeze({ position: undefined, recovered: false }),
)

/** Why `since` is refused, or undefined when it is a position. */
function sinceError(since: unknown): TypeError | undefined {
  const position = since as { epoch?: unknown; offset?: unknown } | null
  if (
    typeof position === 'object' &&
    position !== null &&
    typeof position.epoch === 'string' &&
    Number.isSafeInteger(position.offset) &&
    (position.offset as number) >= 0
  ) {
    return undefined
  }
  return new TypeError(
    'subscribe(topic, { since }): since is a position, { epoch: string, offset: whole number >= 0 }, as a delivery of the topic carried it',
  )
}

/** `conn.subscribe()`: see its contract there. */
export function subscribe(
  conn: Conn,
  topic: string,
  options?: SubscribeOptions,
): Promise<Subscription> {
  const limits = conn[LIMITS]
  const refused = topicNameError(topic, limits.maxTopicLength)
  if (refused) return quiet(Promise.reject(refused))
  const since = options?.since
  if (since !== undefined) {
    const wrong = sinceError(since)
    if (wrong) return quiet(Promise.reject(wrong))
  }
  let member: PresenceMember | undefined
  if (options?.presence !== undefined) {
    try {
      const { meta } = checkPresenceMeta(options.presence)
      // One id per connection, for all its topics, made on its first join.
      member = { id: conn[PRESENCE] ?? newMemberId(), meta }
    } catch (err) {
      return quiet(Promise.reject(err))
    }
  }
  if (conn[STATE] === 'closed') return since ? NOTHING_RECOVERED : NOTHING
  const held = conn[TOPICS]
  const topics = conn[HOME].hub.topics
  if (held?.has(topic)) {
    if (member) {
      try {
        joinAgain(conn, topic, member)
      } catch (err) {
        return quiet(Promise.reject(err))
      }
    }
    return topics[HELD](topic, conn)
  }
  if (held && held.size >= limits.maxTopicsPerConnection) {
    return quiet(
      Promise.reject(
        new RangeError(
          `This connection already holds ${held.size} topics, its maxTopicsPerConnection bound: unsubscribe from one first, or raise maxTopicsPerConnection in the upgrade options`,
        ),
      ),
    )
  }
  // Checked and stored before anything changes: history options that are wrong, or a store
  // that throws (synchronously, though subscribe is typed as a promise), leave the connection
  // as it was, and reject.
  try {
    topics[HISTORY_OF](topic)
  } catch (err) {
    return quiet(Promise.reject(err))
  }
  if (conn[SOCKET].persist) {
    try {
      store(
        conn,
        conn[DATA],
        held ? [...held, topic] : [topic],
        member ? presenceSnapshot(conn, topic, member) : presenceSnapshot(conn),
      )
    } catch (err) {
      return quiet(Promise.reject(err))
    }
  }
  conn[TOPICS] ??= new Set()
  conn[TOPICS].add(topic)
  if (member) conn[PRESENCE] ??= member.id
  // Topics puts it in the runtime's tree (ENTER_TREE) once it may go live there.
  return topics[JOIN](topic, conn, since && { epoch: since.epoch, offset: since.offset }, member)
}

/** A connection holding `topic` subscribes again with metadata: its member joins (again). */
function joinAgain(conn: Conn, topic: string, member: PresenceMember): void {
  const topics = conn[HOME].hub.topics
  const current = topics[MEMBER_OF](topic, member.id)
  if (current && JSON.stringify(current.meta) === JSON.stringify(member.meta)) return
  if (conn[SOCKET].persist) {
    store(conn, conn[DATA], conn[TOPICS], presenceSnapshot(conn, topic, member))
  }
  conn[PRESENCE] ??= member.id
  topics[REJOIN](topic, member)
}

/** Joins the runtime's tree for a topic the connection still holds. */
export function enterTree(conn: Conn, topic: string): void {
  if (conn[TOPICS]?.has(topic) && conn[TREE]) conn[SOCKET].subscribe?.(topic)
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
      presenceSnapshot(conn, topic, null),
    )
  held.delete(topic)
  if (conn[TREE]) conn[SOCKET].unsubscribe?.(topic)
  conn[HOME].hub.topics[LEAVE](topic, conn, conn[PRESENCE])
}

/** `conn.publish()`: see its contract there. */
export function publish(conn: Conn, topic: string, data: MessageData): void {
  // The name bound holds for publishes too: a client that names rooms would otherwise hand
  // the backplane (a Redis channel, its per-topic counts) a name of any length.
  const refused = topicNameError(topic, conn[LIMITS].maxTopicLength)
  if (refused) throw refused
  conn[HOME].hub.topics[PUBLISH_FROM](conn, topic, data)
}

/**
 * Joins the topics a hibernation stored, without storing them again, and rebuilds the
 * connection's members in them: nothing changed, so nothing is reported.
 */
export function rejoin(
  conn: Conn,
  topics: readonly string[],
  presence?: ConnSnapshot['presence'],
): void {
  if (presence) conn[PRESENCE] = presence.id
  for (const topic of topics) {
    conn[TOPICS] ??= new Set()
    if (conn[TOPICS].has(topic)) continue
    conn[TOPICS].add(topic)
    const member =
      presence && Object.hasOwn(presence.topics, topic)
        ? { id: presence.id, meta: presence.topics[topic] as PresenceMember['meta'] }
        : undefined
    void conn[HOME].hub.topics[JOIN](topic, conn, undefined, member, true)
  }
}

/** The connection closed: it leaves every topic it held. */
export function leaveAll(conn: Conn): void {
  const held = conn[TOPICS]
  if (!held) return
  // Forgotten here, so that an unsubscribe() after the end (a cleanup) cannot leave twice.
  conn[TOPICS] = undefined
  for (const topic of held) conn[HOME].hub.topics[LEAVE](topic, conn, conn[PRESENCE])
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
