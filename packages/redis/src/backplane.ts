/**
 * The Redis backplane: topics across instances on Redis pub/sub.
 * @module
 */
import type { HistoryOptions, MessageData, Position } from '@handshake/core'
import type {
  Backplane,
  BackplaneHistory,
  BackplanePresence,
  BackplaneSink,
  HistoryRead,
} from '@handshake/core/adapter'
import { channelOf, topicOf } from './channel.js'
import {
  type CommandConnection,
  type Driver,
  driverFor,
  type RedisClient,
  type SubscriberConnection,
} from './clients.js'
import { bytesToString, decode, encode, newInstanceId, positionedHead } from './envelope.js'
import {
  EMPTY_HISTORY_TTL,
  entryTag,
  historyKeys,
  isNoScript,
  isPermanent,
  MAX_HISTORY_PUBLISHERS,
  newEpoch,
  newInstanceTag,
  ownNumber,
  PUBLISH_SCRIPT,
  parseRead,
  READ_SCRIPT,
  type ServerFacts,
  scriptSha,
  serverFacts,
} from './history.js'
import { RedisPresence } from './presence.js'

/** Options of {@link redisBackplane}. */
export interface RedisBackplaneOptions {
  /**
   * The app's Redis client: ioredis (`new Redis(url)`) or node-redis (`createClient({ url })`,
   * connected). The backplane publishes on it, and subscribes on a `duplicate()` of it (a
   * subscribing connection can do nothing else). It never closes it.
   */
  client: RedisClient
  /**
   * Prepended to a topic to name its Redis channel, to keep apps that share a Redis apart.
   * @defaultValue `'handshake:'`
   */
  prefix?: string
  /**
   * The most publishes Redis may leave unanswered, the client's own queue included (a publish
   * counts until the client settles it). Past it (Redis is down, slow, or its connection is
   * being restored), publishes are dropped and counted in
   * {@link RedisBackplane.droppedPublishes} instead of queued without bound. The bound is
   * fair: no topic, and no connection, holds more than half of what the others leave of it
   * (and of {@link RedisBackplaneOptions.maxPendingBytes}), and within a topic no connection
   * holds more than half of what the topic's other connections leave of the topic's share; the
   * one past its share is the one whose publishes are dropped.
   * @defaultValue 10000
   */
  maxPendingPublishes?: number
  /**
   * The most characters of unanswered publishes (a binary message counts its bytes, a text
   * one its UTF-16 length); past it, publishes are dropped and counted like past
   * {@link RedisBackplaneOptions.maxPendingPublishes}.
   * @defaultValue 8 MiB
   */
  maxPendingBytes?: number
  /**
   * The longest wait between two attempts to reach Redis again after an outage. The first
   * attempt is at once, then 50 ms, doubling up to this. It bounds how long the subscriptions
   * stay down once Redis accepts connections again.
   * @defaultValue 1000
   */
  maxReconnectDelay?: number
  /**
   * The presence heartbeat (ms): every interval, this instance moves its deadline on for each
   * topic where it has members (3 intervals ahead) and reaps the instances whose deadline passed.
   * The members of an instance that died leave every other instance's view within 4 intervals.
   * @defaultValue 5000
   */
  presenceInterval?: number
}

/** The defaults of {@link RedisBackplaneOptions}. */
export const DEFAULT_PREFIX = 'handshake:'
const DEFAULT_MAX_PENDING_PUBLISHES = 10_000
const DEFAULT_MAX_PENDING_BYTES = 8 * 1024 * 1024
const DEFAULT_MAX_RECONNECT_DELAY = 1000
const DEFAULT_PRESENCE_INTERVAL = 5000
/** How long close() waits for Redis to take this instance's members out. */
const CLOSE_PRESENCE_WAIT = 1000
const FIRST_RECONNECT_DELAY = 50
/** The most topics this instance keeps a publish count for; past it, every count starts over. */
const MAX_COUNTED_TOPICS = 65_536
/** The most channels one SUBSCRIBE restores after an outage. */
const SUBSCRIBE_BATCH = 1000
/** The most publishers a topic keeps the last sequence number of; past it, the least recent goes. */
const MAX_HEARD_PUBLISHERS = 1024
/** Sends again of the history publishes, with no answer between, before the restore takes over. */
const MAX_RESYNCS = 3
/** The most messages one history read asks for. */
const MAX_READ = 1_000_000
/** The most topics whose history keys and channel are kept computed. */
const MAX_NAMED_TOPICS = 512
const MAX_PUBLISHERS_ARG = String(MAX_HISTORY_PUBLISHERS)
/** The most of this instance's history publishes whose copy has not come back and whose origin is remembered. */
const MAX_ORIGINS = 10_000

const settled = Promise.resolve()
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** The subscriber connection in use, and the topics Redis confirmed on it. */
interface Session {
  readonly connection: SubscriberConnection
  readonly subscribed: Set<string>
  alive: boolean
}

/** The connection that carries the history's publishes, and the publish script's SHA-1 on it. */
interface HistorySession {
  readonly connection: CommandConnection
  sha: string
  /** The server's run id, and whether it syncs every write (see `history.ts`). */
  facts: ServerFacts
  alive: boolean
}

/**
 * A publish to a topic's history, from the moment it is accepted until Redis answered it: the
 * backplane sends it again, in order, until Redis says it appended it (now or before).
 */
interface Outgoing {
  /** This instance's number for it, in the order of the publishes: the envelope carries it. */
  readonly number: number
  readonly topic: string
  readonly data: MessageData
  /** The data as the script takes it (bytes one character per byte). */
  readonly payload: string
  readonly options: HistoryOptions
  readonly origin: object | undefined
  /** Its number among this instance's publishes on the topic (the script's order check). */
  readonly sequence: number
  /** Whether every earlier publish of this instance on the topic is settled. */
  starts: boolean
  /** Takes it out of the pending bounds. */
  readonly release: () => void
}

/**
 * The `Backplane` of `@handshake/core` on Redis pub/sub: a publish on one instance reaches the
 * subscribers of its topic on every instance that shares the Redis. Make it with
 * {@link redisBackplane}.
 *
 * - A topic is the channel `prefix + topic` (a topic that is not well-formed UTF-16 is sent
 *   escaped, so that two topics never share a channel). This instance subscribes to it while some local
 *   connection holds the topic; `conn.subscribe()` resolves once Redis confirmed the SUBSCRIBE.
 *   Quick subscribe and unsubscribe calls for a topic are applied in order, and Redis ends in
 *   the latest state.
 * - Each message carries this instance's id, its sequence number on its topic, and its kind:
 *   each instance drops its own echo, text stays text, and bytes arrive exactly.
 * - One publisher's messages on a topic arrive in order, at most once: a receiver drops a
 *   message whose sequence number it has seen (a client may send a PUBLISH twice), counted in
 *   {@link RedisBackplane.repeatsDropped}, and counts the skips in
 *   {@link RedisBackplane.gaps} and {@link RedisBackplane.missedMessages}.
 * - Faults: when the subscriber connection is lost (Redis killed or restarted, the connection
 *   killed, Redis cutting a subscriber that fell past its output buffer limit), or a publish
 *   fails or is dropped (except one dropped because its connection is past its share, which is
 *   that client's doing: counted only), the error is reported once per outage (the Topics
 *   `onError`, else its logger) and never thrown. Local delivery goes on. The backplane then opens a new
 *   subscriber connection itself, at once and then at growing intervals up to
 *   {@link RedisBackplaneOptions.maxReconnectDelay}, subscribes it to every topic still held,
 *   waits for a round trip on the app's client, and tells the Topics, which fires `'restore'`.
 *   Messages published during an outage are not replayed.
 * - History ({@link RedisBackplane.history}): a topic that keeps history is kept on a Redis
 *   stream; one Lua script per message gives it the topic's next offset, appends it and
 *   publishes it with its position to every instance, this one included. Its publishes go on a
 *   connection of the backplane's own and are sent again, in order, until Redis answers; the
 *   script appends each once. See the package's README.
 * - Memory: unanswered publishes are bounded by
 *   {@link RedisBackplaneOptions.maxPendingPublishes} and
 *   {@link RedisBackplaneOptions.maxPendingBytes}, fairly per topic and per connection; past
 *   them publishes are dropped and counted.
 */
export class RedisBackplane implements Backplane {
  /** This instance's id, carried by each message it publishes (16 hex digits). */
  readonly instanceId: string = newInstanceId()
  readonly #driver: Driver
  readonly #prefix: string
  readonly #maxPending: number
  readonly #maxPendingBytes: number
  readonly #maxReconnectDelay: number
  #sink: BackplaneSink | undefined
  /** Settles once start() has opened the first session, or failed to. */
  #started: Promise<void> | undefined
  #session: Session | undefined
  /** The topics this instance should be subscribed to. */
  readonly #wanted = new Set<string>()
  /** Per topic, the tail of its subscribe/unsubscribe calls, applied one after another. */
  readonly #chains = new Map<string, Promise<void>>()
  #pending = 0
  #pendingBytes = 0
  /** The pending publishes per topic, and per publishing connection. */
  readonly #byTopic = new Map<string, TopicShare>()
  readonly #byOrigin = new Map<object, Share>()
  #dropped = 0
  /** Every publish so far: a topic's count starts from it, above any number it used before. */
  #published = 0
  /** Per topic, the sequence number of this instance's last publish on it. */
  readonly #sequences = new Map<string, number>()
  /** Per topic held, per publisher, the sequence number of the last message delivered. */
  readonly #heard = new Map<string, Map<string, number>>()
  #repeats = 0
  #gaps = 0
  #missed = 0
  /** Counts faults, so that a restore that saw a new one starts over. */
  #faults = 0
  #restoring: Promise<void> | undefined
  #closed = false

  // --- history ---
  /** Whether a history publish was made: from then on, the history connection is kept up. */
  #historyUsed = false
  #historySession: HistorySession | undefined
  /** Settles once the history connection is open and what waited was sent (single flight). */
  #historyOpening: Promise<void> | undefined
  /** The history publishes not answered yet, in the order they were made. */
  readonly #outbox = new Map<number, Outgoing>()
  #historyPublished = 0
  /** Per topic, this instance's last history publish's number on it. */
  readonly #historySequences = new Map<string, number>()
  /**
   * Which sending the answers belong to: a failure of an earlier one is already being repaired
   * (everything unanswered is sent again, in order, in the next).
   */
  #generation = 0
  /** Whether the history connection must send everything unanswered again. */
  #resend = false
  /** Sends again since the last answer: past a few, the repair waits (see #resync). */
  #resyncs = 0
  readonly #readSha: Promise<string> = scriptSha(READ_SCRIPT)
  /**
   * The origins of this instance's last history publishes whose copy has not come back through
   * pub/sub yet, by their number (held weakly: a closed connection is not kept for this). That
   * copy, when it comes after Redis's answer, and a read of the history that returns them (the
   * core fills a gap, or an outage, from the history; the stream's entries name their instance
   * and number), carry it, so that the core still skips the sender.
   */
  readonly #origins = new Map<number, WeakRef<object>>()
  /** This instance's tag in the ids of the stream entries it appends (see `entryTag`). */
  readonly #instanceTag = newInstanceTag()
  /** History publishes sent so far, first tries and sends again: each has its own new epoch. */
  #attempts = 0
  /** Per topic, its history keys and its channel (see #historyNames). */
  readonly #names = new Map<string, readonly [string, string, string]>()

  /**
   * The history of the topics that keep some, on Redis Streams: see `BackplaneHistory` in
   * `@handshake/core/adapter`, and the package's README. Each message is appended to its topic's stream and published to
   * every instance by one Lua script, which gives it the next offset of the topic's epoch.
   */
  readonly history: BackplaneHistory

  /**
   * Presence shared between instances: see `BackplanePresence` in `@handshake/core/adapter`, and
   * the package's README. Per topic, a hash per instance (member id → metadata) and an index of
   * the instances with their deadlines, changed by one Lua script that publishes the diff.
   */
  readonly presence: BackplanePresence
  readonly #presence: RedisPresence

  /** @param options - see {@link RedisBackplaneOptions} */
  constructor(options: RedisBackplaneOptions) {
    this.#driver = driverFor(options.client)
    this.#prefix = options.prefix ?? DEFAULT_PREFIX
    this.#maxPending = positive(options.maxPendingPublishes, DEFAULT_MAX_PENDING_PUBLISHES)
    this.#maxPendingBytes = positive(options.maxPendingBytes, DEFAULT_MAX_PENDING_BYTES)
    this.#maxReconnectDelay = positive(options.maxReconnectDelay, DEFAULT_MAX_RECONNECT_DELAY)
    // The read script's SHA-1 is computed once; a rejection here would be unhandled otherwise.
    this.#readSha.catch(() => {})
    this.#presence = new RedisPresence(
      {
        instanceId: this.instanceId,
        prefix: this.#prefix,
        command: (args) => this.#driver.command(args),
        sink: () => this.#sink,
        fault: (error) => this.#fault(error),
        closed: () => this.#closed,
        held: (topic) => this.#wanted.has(topic),
      },
      positive(options.presenceInterval, DEFAULT_PRESENCE_INTERVAL),
    )
    this.presence = this.#presence
    this.history = {
      publish: (topic, data, historyOptions, origin) =>
        this.#historyPublish(topic, data, historyOptions, origin),
      read: (topic, since, limit) => this.#historyRead(topic, since, limit),
    }
  }

  /** Which client this backplane drives: `'ioredis'` or `'node-redis'`. */
  get clientKind(): 'ioredis' | 'node-redis' {
    return this.#driver.name
  }

  /** Publishes dropped because Redis left too many unanswered (see the options). */
  get droppedPublishes(): number {
    return this.#dropped
  }

  /**
   * Messages dropped because they repeated one already delivered: the same publisher and
   * sequence number (a client may send a PUBLISH again after a reconnect, not knowing that
   * Redis ran it).
   */
  get repeatsDropped(): number {
    return this.#repeats
  }

  /**
   * How many times a publisher's sequence on a topic skipped ahead: messages that did not
   * arrive (published during an outage, dropped by a publisher past its bounds, or by Redis).
   * {@link RedisBackplane.missedMessages} counts the messages.
   */
  get gaps(): number {
    return this.#gaps
  }

  /** How many messages the {@link RedisBackplane.gaps} skipped, in all. */
  get missedMessages(): number {
    return this.#missed
  }

  /** Publishes sent and not answered yet by Redis. */
  get pendingPublishes(): number {
    return this.#pending
  }

  /** The characters of the publishes sent and not answered yet by Redis. */
  get pendingBytes(): number {
    return this.#pendingBytes
  }

  /** Whether the subscriber connection is up and no fault is being repaired. */
  get healthy(): boolean {
    return this.#session?.alive === true && this.#restoring === undefined
  }

  /**
   * Connects the subscriber connection; called by `topics.useBackplane()`. When Redis cannot
   * be reached, it reports that once and resolves: topics are local until Redis is back.
   */
  async start(sink: BackplaneSink): Promise<void> {
    if (this.#sink) throw new Error('This backplane is started already: give it to one Topics')
    this.#sink = sink
    // Only start() opens the first session: a subscribe or a restore that comes meanwhile
    // waits for it, rather than finding no session, reporting an outage and opening another.
    this.#started = this.#open().then(
      (session) => {
        this.#session = session
      },
      (err) => this.#fault(err),
    )
    await this.#started
  }

  /** Subscribes to the topic's channel; resolves once Redis confirmed it. */
  subscribe(topic: string): Promise<void> {
    if (this.#closed) return settled
    this.#wanted.add(topic)
    return this.#converge(topic).catch((err) => {
      // Closing the backplane ends the subscriptions in flight: no fault.
      if (this.#closed) return
      // A refused SUBSCRIBE (an ACL, say) is restored like a lost connection.
      this.#fault(err)
      throw err
    })
  }

  /** Unsubscribes from the topic's channel. */
  unsubscribe(topic: string): Promise<void> {
    this.#wanted.delete(topic)
    // Counts are kept for wanted topics only (see #receive): whatever the session's state, an
    // outage included, nothing is kept for a topic no local connection holds.
    this.#heard.delete(topic)
    this.#presence.release(topic)
    if (this.#closed) return settled
    return this.#converge(topic).catch((err) => {
      // Closing the backplane ends the unsubscriptions in flight too, with the connection that
      // carried them: no fault (the client says "Disconnects client" or "Connection is closed").
      if (this.#closed) return
      throw err
    })
  }

  /**
   * Publishes to the other instances. It never throws and never waits. Past the pending
   * bounds, or past the share of them that its topic or its connection (`origin`) may hold,
   * the publish is dropped and counted.
   */
  publish(topic: string, data: MessageData, origin?: object): void {
    if (this.#closed) return
    // A dropped publish uses its number too: the receivers see the gap.
    const at = this.#next(topic)
    const message = encode(this.instanceId, data, at)
    const answered = this.#admit(topic, message.length, origin)
    if (!answered) {
      // The first message of a new count tells the receivers not to count a gap before it:
      // when it is dropped, the next one starts the count again, or the receivers would count
      // every number used since their last message as missed.
      if (at.starts) this.#sequences.delete(topic)
      return
    }
    try {
      this.#driver.publish(channelOf(this.#prefix, topic), message).then(answered, (err) => {
        answered()
        this.#fault(err)
      })
    } catch (err) {
      answered()
      this.#fault(err)
    }
  }

  /**
   * Counts a publish of `size` characters in the pending bounds and returns what takes it out
   * again once Redis answered it; undefined when it is refused (past a bound, or past its topic's
   * or its connection's share): then it is counted as dropped, and reported unless it was one
   * connection's doing.
   */
  #admit(topic: string, size: number, origin: object | undefined): (() => void) | undefined {
    const byTopic = this.#byTopic.get(topic)
    const byOrigin = origin === undefined ? undefined : this.#byOrigin.get(origin)
    const inTopic = origin === undefined ? undefined : byTopic?.origins.get(origin)
    const refused =
      this.#pending >= this.#maxPending || this.#pendingBytes + size > this.#maxPendingBytes
        ? 'all'
        : // Within its topic first: a connection that floods a room is refused before the room
          // is full, so that its roommates' publishes still find room.
          byTopic && !this.#withinTopicShare(byTopic, inTopic, size)
          ? 'one connection'
          : !this.#withinShare(byTopic, size)
            ? `the topic "${topic}"`
            : origin !== undefined && !this.#withinShare(byOrigin, size)
              ? 'one connection'
              : undefined
    if (refused) {
      this.#dropped++
      // A connection past its share is that client's doing, not the engine's fault: counted,
      // never reported, so that a client cannot fire the app's onError and its 'restore'
      // listeners (nor hold off a restore) whenever it floods.
      if (refused === 'one connection') return undefined
      // One error per episode: a flood of drops must not cost a stack trace each.
      if (this.#restoring) this.#faults++
      else
        this.#fault(
          new Error(
            refused === 'all'
              ? `Redis left ${this.#pending} publishes (${this.#pendingBytes} characters) unanswered: publishes are dropped until it catches up (maxPendingPublishes, maxPendingBytes)`
              : `Redis left ${this.#pending} publishes (${this.#pendingBytes} characters) unanswered, and ${refused} holds its share of them: its publishes are dropped until Redis catches up, the other topics' go on (maxPendingPublishes, maxPendingBytes)`,
          ),
        )
      return undefined
    }
    this.#pending++
    this.#pendingBytes += size
    const topicShare = byTopic ?? ({ count: 0, bytes: 0, origins: new Map() } satisfies TopicShare)
    if (!byTopic) this.#byTopic.set(topic, topicShare)
    topicShare.count++
    topicShare.bytes += size
    const originShare =
      origin === undefined ? undefined : hold(this.#byOrigin, origin, byOrigin, size)
    const inTopicShare =
      origin === undefined ? undefined : hold(topicShare.origins, origin, inTopic, size)
    return () => {
      this.#pending--
      this.#pendingBytes -= size
      if (origin !== undefined && inTopicShare) {
        release(topicShare.origins, origin, inTopicShare, size)
      }
      release(this.#byTopic, topic, topicShare, size)
      if (origin !== undefined && originShare) release(this.#byOrigin, origin, originShare, size)
    }
  }

  /**
   * Whether one more publish of `size` keeps a holder (a topic, or a connection) within its
   * share: at most half of what the other holders leave of each bound. So one holder alone
   * takes at most half, and one that comes later still finds room. A holder with nothing
   * pending is always within it (the bounds themselves still apply).
   */
  #withinShare(share: Share | undefined, size: number): boolean {
    if (!share) return true
    const count = share.count + 1
    const bytes = share.bytes + size
    return (
      2 * count <= this.#maxPending - (this.#pending - share.count) &&
      2 * bytes <= this.#maxPendingBytes - (this.#pendingBytes - share.bytes)
    )
  }

  /**
   * Whether one more publish of `size` by a connection keeps it within its share of its topic's
   * share: at most half of what the topic's other connections leave of the most the topic may
   * hold (half of what the other topics leave). So one connection alone in a room takes at most
   * a quarter of each bound, and its roommates still find room. A connection with nothing
   * pending in the topic is always within it.
   */
  #withinTopicShare(topic: TopicShare, inTopic: Share | undefined, size: number): boolean {
    if (!inTopic) return true
    const topicCount = (this.#maxPending - (this.#pending - topic.count)) / 2
    const topicBytes = (this.#maxPendingBytes - (this.#pendingBytes - topic.bytes)) / 2
    return (
      2 * (inTopic.count + 1) <= topicCount - (topic.count - inTopic.count) &&
      2 * (inTopic.bytes + size) <= topicBytes - (topic.bytes - inTopic.bytes)
    )
  }

  /**
   * Stops: closes the subscriber connection (Redis drops its subscriptions with it) and stops
   * restoring. The app's client stays open.
   */
  async close(): Promise<void> {
    if (this.#closed) return
    // This instance's members leave the others' views now, rather than at its deadline.
    const leaving = this.#presence.close(CLOSE_PRESENCE_WAIT)
    this.#closed = true
    this.#wanted.clear()
    this.#heard.clear()
    const session = this.#session
    this.#session = undefined
    if (session) {
      session.alive = false
      session.connection.close()
    }
    const history = this.#historySession
    this.#historySession = undefined
    if (history) {
      history.alive = false
      history.connection.close()
    }
    for (const outgoing of this.#outbox.values()) outgoing.release()
    this.#outbox.clear()
    this.#origins.clear()
    this.#historySequences.clear()
    await leaving
  }

  // --- history ---

  /** See {@link BackplaneHistory.publish}. */
  #historyPublish(
    topic: string,
    data: MessageData,
    options: HistoryOptions,
    origin: object | undefined,
  ): void {
    if (this.#closed) return
    const payload = typeof data === 'string' ? data : bytesToString(data)
    const release = this.#admit(topic, payload.length, origin)
    if (!release) return
    // Numbered once accepted, so that one instance's accepted publishes on a topic have no gap
    // in their numbers: the script refuses one that skips ahead.
    let sequence = this.#historySequences.get(topic)
    const number = ++this.#historyPublished
    const starts = sequence === undefined
    if (sequence === undefined) {
      // A count that starts over starts above every number the topic had.
      if (this.#historySequences.size >= MAX_COUNTED_TOPICS) this.#historySequences.clear()
      sequence = number
    } else sequence++
    this.#historySequences.set(topic, sequence)
    const outgoing: Outgoing = {
      number,
      topic,
      data,
      payload,
      options,
      origin,
      sequence,
      starts,
      release,
    }
    this.#outbox.set(number, outgoing)
    if (origin !== undefined) {
      this.#origins.set(number, new WeakRef(origin))
      if (this.#origins.size > MAX_ORIGINS) this.#origins.delete(this.#origins.keys().next().value!)
    }
    this.#historyUsed = true
    const session = this.#historySession
    if (session?.alive && !this.#resend)
      void this.#sendOutgoing(session, outgoing, this.#generation)
    else if (!session) void this.#openHistory()
  }

  /**
   * Opens the history connection if it is not open, and sends again, in order, everything not
   * answered yet when something went wrong. One at a time; the restore waits for it too.
   */
  #openHistory(): Promise<void> {
    this.#historyOpening ??= this.#repairHistory()
      .catch((err) => this.#fault(err))
      .finally(() => {
        this.#historyOpening = undefined
      })
    return this.#historyOpening
  }

  /**
   * Until nothing waits: a live history connection (a new one when it was lost), the publish
   * script loaded on it, and every unanswered publish sent again, in order. Rejects when the
   * connection cannot be opened, or what it sent again needs another try later.
   */
  async #repairHistory(): Promise<void> {
    await this.#started
    for (let pass = 0; ; pass++) {
      if (this.#closed) return
      let session = this.#historySession
      if (session?.alive && !this.#resend) return
      if (pass > 0 && this.#resyncs > MAX_RESYNCS) {
        throw new Error(
          'Redis kept refusing the history publishes out of order: they are sent again after a while',
        )
      }
      this.#resend = true
      if (!session?.alive) {
        session?.connection.close()
        this.#historySession = undefined
        session = await this.#openHistorySession()
        if (!session) return
      } else {
        // Redis may have lost its scripts (SCRIPT FLUSH): loaded again first.
        await session.connection.call(['SCRIPT', 'LOAD', PUBLISH_SCRIPT])
      }
      if (!(await this.#resendAll(session))) {
        throw new Error('Redis refused the history publishes sent again: they are sent again later')
      }
    }
  }

  /** Opens a history connection and loads the publish script on it; undefined once closed. */
  async #openHistorySession(): Promise<HistorySession | undefined> {
    const session: HistorySession = {
      connection: await this.#driver.openCommander({
        lost: (error) => {
          session.alive = false
          if (this.#historySession === session) {
            this.#resend = true
            this.#fault(error)
          }
        },
      }),
      sha: '',
      facts: { runId: '', durable: false },
      alive: true,
    }
    try {
      session.facts = await serverFacts(session.connection.call)
      session.sha = String(await session.connection.call(['SCRIPT', 'LOAD', PUBLISH_SCRIPT]))
    } catch (err) {
      session.alive = false
      session.connection.close()
      throw err
    }
    if (this.#closed) {
      session.alive = false
      session.connection.close()
      return undefined
    }
    this.#historySession = session
    return session
  }

  /**
   * Sends every unanswered history publish again, in order, on `session`, each topic's first
   * one marked as starting the instance's count (everything before it is settled). Resolves
   * with whether none of them failed in a way that needs another try.
   */
  async #resendAll(session: HistorySession): Promise<boolean> {
    const generation = ++this.#generation
    this.#resend = false
    const first = new Set<string>()
    const sent: Promise<boolean>[] = []
    for (const outgoing of this.#outbox.values()) {
      if (!first.has(outgoing.topic)) {
        first.add(outgoing.topic)
        outgoing.starts = true
      }
      sent.push(this.#sendOutgoing(session, outgoing, generation))
    }
    return (await Promise.all(sent)).every(Boolean)
  }

  /**
   * Sends one history publish. Resolves with false when it failed in a way that sends
   * everything unanswered again (the connection lost, Redis unable to run it for now).
   */
  async #sendOutgoing(
    session: HistorySession,
    outgoing: Outgoing,
    generation: number,
  ): Promise<boolean> {
    const [meta, stream, channel] = this.#historyNames(outgoing.topic)
    const binary = typeof outgoing.data !== 'string'
    // Unique to this attempt (never reused, even for the same publish sent again after a
    // restart that lost the history it had made): this instance's random id and a count.
    const epoch = this.instanceId + (++this.#attempts).toString(36)
    let reply: unknown
    try {
      reply = await session.connection.call([
        'EVALSHA',
        session.sha,
        '2',
        meta,
        stream,
        epoch,
        String(Math.max(1, Math.floor(outgoing.options.size))),
        String(Math.max(1, Math.ceil(outgoing.options.ttl))),
        channel,
        this.instanceId,
        String(outgoing.sequence),
        outgoing.starts ? '1' : '0',
        binary ? 'b' : 't',
        positionedHead(this.instanceId, binary, outgoing.number),
        outgoing.payload,
        MAX_PUBLISHERS_ARG,
        session.facts.runId,
        session.facts.durable ? '1' : '0',
        entryTag(this.#instanceTag, outgoing.number),
      ])
    } catch (err) {
      return this.#sendFailed(session, outgoing, generation, err)
    }
    if (this.#outbox.get(outgoing.number) !== outgoing) return true
    if (Array.isArray(reply) && reply.length === 2) {
      this.#settle(outgoing)
      // Its copy comes through pub/sub, in offset order with the others' messages (or came).
      return true
    }
    if (Number(reply) === 0) {
      // Appended before (this one was sent again after its answer was lost).
      this.#settle(outgoing)
      return true
    }
    // An earlier publish of this instance on the topic is missing: everything unanswered goes
    // again, in order (only once per sending: its followers fail the same way).
    if (generation === this.#generation) this.#resync()
    return true
  }

  #sendFailed(
    session: HistorySession,
    outgoing: Outgoing,
    generation: number,
    error: unknown,
  ): boolean {
    if (this.#outbox.get(outgoing.number) !== outgoing) return true
    // Lost with its connection: the restore sends it again on the next one.
    if (!session.alive || this.#closed) return false
    if (isPermanent(error)) {
      // Redis will never run it (a key of another type under the history's key, a refused
      // permission): dropped and counted, so that it holds up nothing behind it.
      this.#settle(outgoing)
      this.#dropped++
      this.#fault(error)
      if (generation === this.#generation) this.#resync()
      return true
    }
    if (generation !== this.#generation) return true
    if (isNoScript(error)) {
      // Redis lost its scripts: loaded again, then everything unanswered goes again, in order.
      this.#resync()
      return true
    }
    // Redis cannot run it now (loading, out of memory, busy): the restore sends everything
    // unanswered again, after a while.
    this.#generation++
    this.#resend = true
    this.#fault(error)
    return false
  }

  /**
   * Sends everything unanswered again, in order, now (the answers of the current sending are
   * ignored from here on); when that keeps failing, the restore does it after a while.
   */
  #resync(): void {
    this.#generation++
    this.#resend = true
    this.#resyncs++
    void this.#openHistory()
  }

  /** Redis answered a history publish: it leaves the pending bounds. */
  #settle(outgoing: Outgoing): void {
    this.#outbox.delete(outgoing.number)
    outgoing.release()
    this.#resyncs = 0
  }

  /** The origin of this instance's publish of that number, if it is remembered. */
  #originOf(number: number): object | undefined {
    return this.#origins.get(number)?.deref()
  }

  /** Gives this instance's subscribers a message of a topic with history. */
  #deliverPositioned(
    topic: string,
    data: MessageData,
    epoch: string,
    offset: number,
    origin: object | undefined,
  ): void {
    try {
      this.#sink?.message(topic, data, { epoch, offset }, origin)
    } catch (err) {
      // Never throw into the client's parser.
      this.#fault(err)
    }
  }

  /** A topic's history keys and channel, computed once per topic (the last few hundred). */
  #historyNames(topic: string): readonly [meta: string, stream: string, channel: string] {
    let names = this.#names.get(topic)
    if (!names) {
      names = [...historyKeys(this.#prefix, topic), channelOf(this.#prefix, topic)]
      if (this.#names.size >= MAX_NAMED_TOPICS) this.#names.delete(this.#names.keys().next().value!)
      this.#names.set(topic, names)
    }
    return names
  }

  /** See {@link BackplaneHistory.read}. */
  async #historyRead(
    topic: string,
    since: Position | undefined,
    limit: number,
  ): Promise<HistoryRead> {
    const [meta, stream] = historyKeys(this.#prefix, topic)
    const args = [
      '2',
      meta,
      stream,
      since?.epoch ?? '',
      String(since?.offset ?? 0),
      String(Math.max(1, Math.min(Math.floor(limit), MAX_READ))),
      newEpoch(),
      String(EMPTY_HISTORY_TTL),
    ]
    let reply: unknown
    try {
      reply = await this.#driver.command(['EVALSHA', await this.#readSha, ...args])
    } catch (err) {
      if (!isNoScript(err)) throw err
      reply = await this.#driver.command(['EVAL', READ_SCRIPT, ...args])
    }
    // This instance's own recent publishes carry their origin, so that the core still skips
    // their sender when it delivers them from the history.
    return parseRead(reply, (tag) => {
      const number = ownNumber(this.#instanceTag, tag)
      return number === undefined ? undefined : this.#originOf(number)
    })
  }

  /** The next sequence number of this instance's publishes on `topic`. */
  #next(topic: string): { sequence: number; starts: boolean } {
    const published = ++this.#published
    let last = this.#sequences.get(topic)
    const starts = last === undefined
    if (last === undefined) {
      // A count that starts over starts above every number the topic had: no false repeat.
      if (this.#sequences.size >= MAX_COUNTED_TOPICS) this.#sequences.clear()
      last = published - 1
    }
    const sequence = last + 1
    this.#sequences.set(topic, sequence)
    return { sequence, starts }
  }

  // --- subscriptions ---

  /** Queues one pass that brings Redis in line with `#wanted` for this topic. */
  #converge(topic: string): Promise<void> {
    const previous = this.#chains.get(topic) ?? settled
    const pass = previous.then(() => this.#apply(topic))
    const tail = pass.catch(() => {})
    this.#chains.set(topic, tail)
    void tail.then(() => {
      if (this.#chains.get(topic) === tail) this.#chains.delete(topic)
    })
    return pass
  }

  async #apply(topic: string): Promise<void> {
    await this.#started
    const session = this.#session
    const wanted = this.#wanted.has(topic)
    if (!session?.alive) {
      // The connection is gone and its subscriptions with it; the restore subscribes the topic.
      if (wanted) throw new Error(`Redis is unreachable: "${topic}" is subscribed once it is back`)
      return
    }
    const channel = channelOf(this.#prefix, topic)
    if (wanted && !session.subscribed.has(topic)) {
      await session.connection.subscribe([channel])
      session.subscribed.add(topic)
    } else if (!wanted && session.subscribed.has(topic)) {
      session.subscribed.delete(topic)
      await session.connection.unsubscribe(channel)
    }
  }

  /**
   * Subscribes a new session to every wanted topic, up to {@link SUBSCRIBE_BATCH} channels per
   * SUBSCRIBE, sent together: a few round trips, not one per topic.
   */
  async #subscribeInBatches(session: Session): Promise<void> {
    const topics = [...this.#wanted].filter((topic) => !session.subscribed.has(topic))
    const batches: Promise<void>[] = []
    for (let i = 0; i < topics.length; i += SUBSCRIBE_BATCH) {
      const batch = topics.slice(i, i + SUBSCRIBE_BATCH)
      batches.push(
        session.connection
          .subscribe(batch.map((topic) => channelOf(this.#prefix, topic)))
          .then(() => {
            // Confirmed, wanted or not by now: the chains' pass that follows unsubscribes the rest.
            for (const topic of batch) session.subscribed.add(topic)
          }),
      )
    }
    await Promise.all(batches)
  }

  // --- faults ---

  /** Opens a subscriber connection whose loss starts a restore. */
  async #open(): Promise<Session> {
    const connection = await this.#driver.openSubscriber({
      message: (channel, message) => this.#receive(channel, message),
      lost: (error) => {
        session.alive = false
        if (this.#session === session) this.#fault(error)
      },
    })
    const session: Session = { connection, subscribed: new Set(), alive: true }
    if (this.#closed) {
      session.alive = false
      connection.close()
    }
    return session
  }

  #receive(channel: string, message: string): void {
    const topic = topicOf(this.#prefix, channel)
    if (topic === undefined) return
    // A topic no local connection holds (its UNSUBSCRIBE is on its way) has nobody to deliver
    // to, and keeps no count: one left during an outage would otherwise keep its count forever.
    if (!this.#wanted.has(topic)) return
    if (this.#presence.receive(topic, message)) return
    const decoded = decode(this.instanceId, message)
    if (decoded.kind === 'own') {
      // This instance's own history publish, with the origin it was given: from the outbox
      // while Redis's answer is on its way, else from what the answer left. Once its copy is
      // here, a read no longer needs its origin (the core has it): only the copies still on
      // their way are remembered, so that other traffic does not push theirs out.
      const remembered = this.#originOf(decoded.number)
      this.#origins.delete(decoded.number)
      const outgoing = this.#outbox.get(decoded.number)
      if (outgoing) {
        this.#deliverPositioned(
          topic,
          outgoing.data,
          decoded.epoch,
          decoded.offset,
          outgoing.origin,
        )
        return
      }
      // Its data, read as if another instance had sent it.
      const copy = decode('', message)
      if (copy.kind === 'positioned') {
        this.#deliverPositioned(topic, copy.data, decoded.epoch, decoded.offset, remembered)
      }
      return
    }
    if (decoded.kind === 'positioned') {
      this.#deliverPositioned(topic, decoded.data, decoded.epoch, decoded.offset, undefined)
      return
    }
    if (decoded.kind !== 'message') return
    let heard = this.#heard.get(topic)
    if (!heard) {
      heard = new Map()
      this.#heard.set(topic, heard)
    }
    const last = heard.get(decoded.publisher)
    if (last !== undefined && decoded.sequence <= last) {
      this.#repeats++
      return
    }
    if (last !== undefined && !decoded.starts && decoded.sequence > last + 1) {
      this.#gaps++
      this.#missed += decoded.sequence - last - 1
    }
    if (last === undefined && heard.size >= MAX_HEARD_PUBLISHERS) {
      // Forget the publisher heard from least recently (most likely an instance long gone),
      // not every one: an active publisher's repeat must still be recognized.
      const oldest = heard.keys().next()
      if (!oldest.done) heard.delete(oldest.value)
    }
    // Deleted first, so that the map's order is the order in which publishers were last heard.
    heard.delete(decoded.publisher)
    heard.set(decoded.publisher, decoded.sequence)
    try {
      this.#sink?.message(topic, decoded.data)
    } catch (err) {
      // Never throw into the client's parser.
      this.#fault(err)
    }
  }

  /** Reports a fault (the Topics reports it once per outage) and makes sure a restore runs. */
  #fault(error: unknown): void {
    if (this.#closed) return
    this.#faults++
    this.#sink?.down(error)
    this.#restoring ??= this.#restore()
  }

  /**
   * Until a pass sees no new fault: a live subscriber connection (a new one when it was lost),
   * every wanted topic subscribed on it, and a round trip on the app's client, which also
   * waits for the publishes before it. Then the Topics is told, and fires `'restore'`.
   */
  async #restore(): Promise<void> {
    await this.#started
    let delay = 0
    while (!this.#closed) {
      if (delay > 0) await sleep(delay)
      delay = Math.min(Math.max(delay * 2, FIRST_RECONNECT_DELAY), this.#maxReconnectDelay)
      if (this.#closed) return
      const faults = this.#faults
      try {
        let session = this.#session
        if (!session?.alive) {
          // The replaced session is closed, so that no topic stays subscribed on it. (Only
          // start() and this loop open sessions, and this loop waited for start().)
          session?.connection.close()
          this.#session = undefined
          session = await this.#open()
          this.#session = session
        }
        for (const topic of this.#sink?.topics() ?? []) this.#wanted.add(topic)
        await this.#subscribeInBatches(session)
        // Then each topic's own chain, for the calls made meanwhile (no command when none).
        const topics = new Set([...this.#wanted, ...session.subscribed])
        await Promise.all([...topics].map((topic) => this.#converge(topic)))
        // The history's publishes not answered during the outage go now, in order, before up.
        if (this.#historyUsed) {
          this.#resyncs = 0
          await this.#openHistory()
        }
        // This instance's members, as the Topics has them, in Redis again before up().
        await this.#presence.reassert()
        await this.#driver.ping()
      } catch {
        continue
      }
      if (faults === this.#faults && this.#session?.alive && !this.#closed) {
        this.#restoring = undefined
        this.#sink?.up()
        return
      }
    }
    this.#restoring = undefined
  }
}

/** What one topic, or one connection, holds of the pending publishes. */
interface Share {
  count: number
  bytes: number
}

/** What one topic holds of the pending publishes, and what each connection holds of that. */
interface TopicShare extends Share {
  readonly origins: Map<object, Share>
}

/** Counts a publish in its holder's share; returns the share. */
function hold<K>(shares: Map<K, Share>, key: K, share: Share | undefined, size: number): Share {
  const held = share ?? { count: 0, bytes: 0 }
  if (!share) shares.set(key, held)
  held.count++
  held.bytes += size
  return held
}

/** Takes an answered publish out of its holder's share; an empty share is forgotten. */
function release<K>(shares: Map<K, Share>, key: K, share: Share, size: number): void {
  share.count--
  share.bytes -= size
  if (share.count === 0 && shares.get(key) === share) shares.delete(key)
}

function positive(value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (!(value > 0)) throw new RangeError(`Expected a positive number, got ${value}`)
  return value
}

/**
 * Makes a {@link RedisBackplane} on the app's Redis client, to pass to the `useBackplane()` of a
 * server's topics (`server.topics`).
 *
 * @example
 * ```ts
 * import { redisBackplane } from '@handshake/redis'
 * import { Redis } from 'ioredis'
 *
 * const server = await serve(app, { port: 3000 })
 * await server.topics.useBackplane(redisBackplane({ client: new Redis(process.env.REDIS_URL) }))
 * ```
 *
 * @example
 * ```ts
 * import { createClient } from 'redis'
 *
 * const client = createClient({ url: process.env.REDIS_URL }).on('error', console.error)
 * await server.topics.useBackplane(redisBackplane({ client: await client.connect() }))
 * ```
 */
export function redisBackplane(options: RedisBackplaneOptions): RedisBackplane {
  return new RedisBackplane(options)
}
