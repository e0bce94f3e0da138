/**
 * Topics: publish and subscribe between the connections of one hub and, through a
 * {@link Backplane}, across processes and machines.
 * @module
 */

import type { Backplane, BackplaneSink } from './backplane.js'
import { describeError } from './close.js'
import type { Logger, MessageData } from './contracts.js'
import {
  checkHistoryOptions,
  type Delivery,
  GapEvent,
  type HistoryOptions,
  type HistoryRead,
  type HistoryStore,
  MemoryHistory,
  type Position,
  type Subscription,
  type TopicsHistoryOptions,
} from './history.js'
import {
  CHECK_BACKLOG,
  DELIVER,
  ENTER_TREE,
  HELD,
  HISTORY_OF,
  HISTORY_STORE,
  JOIN,
  LEAVE,
  MEMBER_OF,
  PRESENCE_VIEW,
  PUBLISH_FROM,
  PUBLISH_NATIVE,
  REJOIN,
  TREE,
} from './internal.js'
import { PresenceEvent, type PresenceMember, sameMember } from './presence.js'
import { PresenceView } from './presence-view.js'
import { Sequencer, type SequencerHost } from './sequencer.js'
import type { Subscriber, TopicTree } from './subscriber.js'
import { topicNameError } from './topic-name.js'

export type {
  Backplane,
  BackplaneHistory,
  BackplanePresence,
  BackplaneSink,
} from './backplane.js'
export type { Subscriber, TopicTree } from './subscriber.js'
export { topicNameError } from './topic-name.js'

/** Options of {@link Topics}. */
export interface TopicsOptions {
  /**
   * Called once per backplane outage with the engine's error, and with the error of an event
   * listener (`'restore'`) that threw or rejected. Without it, the error goes to the logger.
   */
  onError?: (error: unknown) => void
  /** Where backplane and listener errors go without `onError`. @defaultValue console */
  logger?: Logger
}

interface Topic {
  /** Subscribers the core delivers to one by one. */
  readonly members: Set<Subscriber>
  /** Subscribers held by a runtime's own tree, per tree. */
  readonly trees: Map<TopicTree, Set<Subscriber>>
  /** The backplane subscription: settles once the engine confirmed it. */
  confirmed: Promise<void> | undefined
  /** What a subscription to this topic without history resolves to, made on first use. */
  joined: Promise<Subscription> | undefined
  /** The delivery of a topic that keeps history. */
  history: Sequencer | undefined
  /** How much history it keeps. */
  options: HistoryOptions | undefined
  /** Its presence, once in use here: a member joined, or its members were asked for. */
  presence: PresenceView | undefined
}

const confirmedNow = Promise.resolve()
const NOT_KEPT: Subscription = Object.freeze({ position: undefined, recovered: true })
const NOT_RECOVERED: Subscription = Object.freeze({ position: undefined, recovered: false })
const rawFrame = (delivery: Delivery) => (delivery.type === 'message' ? delivery.data : undefined)
const NO_HISTORY =
  'This backplane keeps no history: topics.useHistory() needs a backplane that does (redisBackplane() of @handshake/redis keeps it in Redis Streams), or no backplane (the history is then kept in memory)'

/**
 * The topics of one hub (a server, a Worker, a Durable Object): who subscribes to what, and the
 * fan-out of every publish. Reach them with `getHub(c).topics`, or `conn.hub.topics`.
 *
 * Connections join and leave with `conn.subscribe(topic)` and `conn.unsubscribe(topic)`, and
 * leave every topic when they close. `conn.publish(topic, data)` reaches every subscriber but the
 * sender; {@link Topics.publish} (from an HTTP route, a timer) reaches every subscriber.
 *
 * Guarantees, on every runtime:
 * - publishing never waits on a subscriber: a subscriber that cannot keep up is closed with
 *   1008, or has its messages dropped and counted (the `slowSubscriber` option);
 * - the messages of one publisher on one topic arrive in the order published, once;
 * - text stays text and bytes stay bytes (the exact bytes of a view);
 * - local delivery never depends on the backplane. Across instances delivery is at most once.
 *
 * It fires `'restore'` when the backplane came back after an outage and every topic is
 * subscribed again: `topics.addEventListener('restore', listener)`. Messages published elsewhere
 * during the outage were not delivered here (unless the topic keeps history, see
 * {@link Topics.useHistory}): use it to repair state of your own. Presence needs no repair: it
 * fires `'presence'` (a {@link PresenceEvent}, see {@link Topics.presence}) for every change
 * of a held topic's members, an outage's included. It fires `'gap'`
 * (a {@link GapEvent}) when messages of a topic that keeps history were lost on the way and
 * could not be read back. (`addEventListener` is not narrowed to these in the types: that
 * override would not compile against the Workers runtime's `EventTarget` types.) A listener
 * that throws or rejects breaks nothing: its error goes to `onError`, else the logger, like a
 * backplane's.
 *
 * @example
 * ```ts
 * import { getHub } from '@handshake/core'
 *
 * app.post('/rooms/:room/announce', async (c) => {
 *   getHub(c).topics.publish(c.req.param('room'), await c.req.text())
 *   return c.body(null, 204)
 * })
 * ```
 */
export class Topics extends EventTarget {
  readonly #topics = new Map<string, Topic>()
  readonly #options: TopicsOptions
  #backplane: Backplane | undefined
  #down = false
  // Topics published through a runtime's tree since their subscribers' backlogs were checked,
  // and whether the check of this turn is armed: one timer per turn, however many publishes.
  readonly #published = new Set<Topic>()
  #backlogCheckArmed = false
  #history: TopicsHistoryOptions | undefined
  #frame: (delivery: Delivery) => MessageData | undefined = rawFrame
  #memory: MemoryHistory | undefined;
  /**
   * @internal The store its hub's owner gives (a Durable Object's storage); without it, and
   * without a backplane that keeps history, history is kept in memory.
   */
  [HISTORY_STORE]: HistoryStore | undefined

  static {
    // A throw in an EventTarget listener is an uncaught exception on Node (and reaches the
    // global error handler elsewhere): a broken 'restore' listener would end the process. So
    // each listener runs wrapped, and its failure is reported like a backplane's. Installed on
    // the prototype rather than declared as an override, which the Workers runtime's
    // EventTarget types would refuse (see the class comment).
    const add = EventTarget.prototype.addEventListener
    const remove = EventTarget.prototype.removeEventListener
    const wrappers = new WeakMap<object, EventListener>()
    const wrapperOf = (listener: EventListenerOrEventListenerObject): EventListener => {
      let wrapper = wrappers.get(listener)
      if (!wrapper) {
        wrapper = function (this: Topics, event: Event) {
          try {
            const result: unknown =
              typeof listener === 'function'
                ? listener.call(this, event)
                : listener.handleEvent(event)
            if (typeof (result as PromiseLike<unknown> | undefined)?.then === 'function') {
              ;(result as PromiseLike<unknown>).then(undefined, (err: unknown) =>
                this.#appFailed(`A '${event.type}' listener of Topics failed`, err),
              )
            }
          } catch (err) {
            this.#appFailed(`A '${event.type}' listener of Topics failed`, err)
          }
        }
        wrappers.set(listener, wrapper)
      }
      return wrapper
    }
    Object.defineProperties(Topics.prototype, {
      addEventListener: {
        configurable: true,
        writable: true,
        value(
          this: Topics,
          type: string,
          listener: EventListenerOrEventListenerObject | null,
          options?: AddEventListenerOptions | boolean,
        ) {
          add.call(this, type, listener && wrapperOf(listener), options)
        },
      },
      removeEventListener: {
        configurable: true,
        writable: true,
        value(
          this: Topics,
          type: string,
          listener: EventListenerOrEventListenerObject | null,
          options?: EventListenerOptions | boolean,
        ) {
          remove.call(this, type, listener && (wrappers.get(listener) ?? listener), options)
        },
      },
    })
  }

  /** @param options - see {@link TopicsOptions} */
  constructor(options: TopicsOptions = {}) {
    super()
    this.#options = options
  }

  /** How many local connections subscribe to `topic`. */
  subscribers(topic: string): number {
    const entry = this.#topics.get(topic)
    if (!entry) return 0
    let count = entry.members.size + (entry.history?.recovering?.size ?? 0)
    for (const members of entry.trees.values()) count += members.size
    return count
  }

  /** The topics with at least one local subscriber. */
  names(): string[] {
    return [...this.#topics.keys()]
  }

  /**
   * Publishes `data` to every subscriber of `topic`: here at once, and on the other instances
   * through the backplane. It never waits on a subscriber or on the backplane, and never
   * throws for them.
   * @param topic - the topic
   * @param data - a string (text) or the exact bytes of a `Uint8Array` view (binary)
   */
  publish(topic: string, data: MessageData): void {
    this[PUBLISH_FROM](undefined, topic, data)
  }

  /**
   * Connects a backplane, so that publishes reach the subscribers of every instance. Call it
   * once, at startup; the topics already held are subscribed on it at once.
   *
   * @example
   * ```ts
   * import { redisBackplane } from '@handshake/redis'
   *
   * const server = await serve(app, { port: 3000 })
   * await server.topics.useBackplane(redisBackplane({ client: new Redis(redisUrl) }))
   * ```
   * @throws Error when a backplane is already in use; the backplane's own error when it fails
   *   to start, and then this Topics has no backplane (another one may be given)
   */
  async useBackplane(backplane: Backplane): Promise<void> {
    if (this.#backplane) {
      throw new Error('This Topics already has a backplane: call useBackplane() once, at startup')
    }
    if (this.#history && !backplane.history) throw new Error(NO_HISTORY)
    this.#backplane = backplane
    // A backplane speaks for this Topics only while it is its backplane: once closed (or
    // refused at start), what it still says (a message its client had buffered, the end of
    // a restore) reaches nobody, and cannot end the next backplane's outage.
    const current = () => this.#backplane === backplane
    const sink: BackplaneSink = {
      message: (topic, data, position, origin) => {
        if (!current()) return
        const entry = this.#topics.get(topic)
        if (!entry) return
        const sender = origin as Subscriber | undefined
        if (position && entry.history) entry.history.remote(data, position, sender)
        else this.#deliverLocal(sender, topic, data)
      },
      down: (error) => {
        if (current()) this.#reportDown(error)
      },
      up: () => {
        if (!current()) return
        const wasDown = this.#down
        this.#down = false
        // What was published during the outage is read before anything newer is delivered.
        for (const entry of this.#topics.values()) entry.history?.refill()
        // Diffs published during the outage were lost: every view is read again, and what
        // changed meanwhile is reported as one diff per topic.
        for (const [topic, entry] of this.#topics) if (entry.presence) this.#load(topic, entry)
        if (wasDown) this.dispatchEvent(new Event('restore'))
      },
      topics: () => this.names(),
      presence: (topic, joins, leaves) => {
        if (current()) this.#topics.get(topic)?.presence?.remote(joins, leaves)
      },
      members: (topic) => {
        const view = current() ? this.#topics.get(topic)?.presence : undefined
        return view ? [...view.local.values()] : []
      },
    }
    try {
      await backplane.start(sink)
    } catch (err) {
      // A backplane that refused to start (one given to another Topics already, say) is not
      // this Topics' own: keeping it would subscribe, unsubscribe and close on its owner's behalf.
      if (this.#backplane === backplane) this.#backplane = undefined
      throw err
    }
    for (const [topic, entry] of this.#topics) {
      entry.confirmed = this.#subscribeRemote(topic)
      entry.joined = undefined
      // Positions now come from the backplane's history.
      if (entry.history && backplane.history) entry.history = this.#sequencer(topic, entry)
      // This hub's members are shared from now on, and the others' read.
      const view = entry.presence
      if (view && backplane.presence) {
        for (const member of view.local.values()) this.#share(topic, member)
        this.#load(topic, entry)
      }
    }
  }

  /**
   * Keeps the history of the topics `options.history` names, so that their messages get
   * positions and a subscriber can recover what it missed: `conn.subscribe(topic, { since })`.
   * Call it once, at startup, before connections subscribe. The history is kept by the
   * backplane when it keeps history (`@handshake/redis`), else by the hub's owner (a Durable
   * Object's storage), else in memory.
   *
   * @example
   * ```ts
   * getHub(c).topics.useHistory({
   *   history: (topic) => (topic.startsWith('room:') ? { size: 100, ttl: 60_000 } : undefined),
   *   frame: (d) => JSON.stringify(d.type === 'message' ? { ...d, data: String(d.data) } : d),
   * })
   * ```
   * @throws TypeError when `history` is not a function or `frame` is given and is not one;
   *   Error when history is already kept, or when the backplane in use keeps none;
   *   RangeError when `history` answers bad options for a topic already held
   */
  useHistory(options: TopicsHistoryOptions): void {
    if (this.#history) {
      throw new Error('This Topics already keeps history: call useHistory() once, at startup')
    }
    if (typeof options?.history !== 'function') {
      throw new TypeError(
        'useHistory() takes { history: (topic) => ({ size, ttl }) or undefined, frame?: (delivery) => data }',
      )
    }
    if (options.frame !== undefined && typeof options.frame !== 'function') {
      throw new TypeError(
        'useHistory({ frame }): frame is a function from a delivery to the data sent',
      )
    }
    if (this.#backplane && !this.#backplane.history) throw new Error(NO_HISTORY)
    const held = [...this.#topics].map(
      ([topic, entry]) =>
        [topic, entry, checkHistoryOptions(topic, options.history(topic))] as const,
    )
    this.#history = options
    this.#frame = options.frame ?? rawFrame
    for (const [topic, entry, kept] of held) this.#keep(entry, kept, topic)
  }

  /**
   * The members of `topic` on every instance (see `conn.subscribe(topic, { presence })`), each
   * once. Without a backplane, or with one that shares no presence (`Backplane.presence`), it
   * lists this hub's own members only.
   *
   * For a topic this hub holds (a local subscriber) it answers from the hub's view of the
   * topic, made on first use (the first member's join, or this call) and kept while the topic
   * is held: on first use it is read from the backplane, then kept by the backplane's diffs,
   * and read again each time the backplane is back from an outage. For a topic not held here it
   * reads the backplane. It rejects when the backplane's engine fails.
   *
   * Every change of a held topic's view is a `'presence'` event (a {@link PresenceEvent}):
   * this hub's joins and leaves at once, synchronously, the other instances' as their diffs
   * arrive, and after an outage the difference between the view before and the members read
   * again. A topic's events start with its view (a member here, or a first call of this
   * method): to keep a list, listen first, then read it once, then apply the events.
   * @throws TypeError for a name that is not a non-empty string of well-formed Unicode
   */
  async presence(topic: string): Promise<PresenceMember[]> {
    const refused = topicNameError(topic)
    if (refused) throw refused
    const entry = this.#topics.get(topic)
    if (!entry) {
      const shared = this.#backplane?.presence
      return shared ? [...(await shared.read(topic))] : []
    }
    const view = this[PRESENCE_VIEW](topic, entry)
    // A load superseded by a newer one (a backplane's return) is followed by that one.
    for (let tries = 0; !view.loaded && tries < 3; tries++) {
      await (view.loading ?? this.#load(topic, entry))
    }
    return [...view.members.values()]
  }

  /**
   * The latest position of `topic`: undefined for a topic without history. It rejects when the
   * history cannot be read (the backplane's engine failed).
   */
  async position(topic: string): Promise<Position | undefined> {
    const refused = topicNameError(topic)
    if (refused) throw refused
    if (!this.#history || !this.#historyOf(topic)) return undefined
    const read = await this.#read(topic, undefined, 0)
    return { epoch: read.epoch, offset: read.offset }
  }

  /**
   * Stops using the backplane (for a graceful shutdown): it is closed, and topics are local again.
   * What it still reports after this (a late message, the end of its outage) is ignored, and an
   * outage of a backplane given later is reported afresh.
   */
  async closeBackplane(): Promise<void> {
    const backplane = this.#backplane
    this.#backplane = undefined
    // Its outage ends with it: the next backplane's first fault is reported.
    this.#down = false
    // The other instances' members are out of sight: each view is this hub's own members.
    for (const entry of this.#topics.values()) entry.presence?.localOnly()
    await backplane?.close()
  }

  /**
   * @internal A connection joins a topic (from `since`, for one that keeps history); resolves
   * once the backplane confirmed it and, with `since`, once the missed messages were sent.
   */
  [JOIN](
    topic: string,
    subscriber: Subscriber,
    since?: Position,
    member?: PresenceMember,
    restoring = false,
  ): Promise<Subscription> {
    let entry = this.#topics.get(topic)
    if (!entry) {
      let options: HistoryOptions | undefined
      try {
        options = this.#history ? this.#historyOf(topic) : undefined
      } catch (err) {
        // Checked before the subscription changed anything; answered otherwise now.
        this.#appFailed(`useHistory()'s history('${topic}') threw; the topic keeps none`, err)
      }
      entry = {
        members: new Set(),
        trees: new Map(),
        confirmed: undefined,
        joined: undefined,
        history: undefined,
        options: undefined,
        presence: undefined,
      }
      this.#topics.set(topic, entry)
      entry.confirmed = this.#backplane ? this.#subscribeRemote(topic) : confirmedNow
      this.#keep(entry, options, topic)
    }
    // A member is listed from its subscription on, as its messages flow from then on.
    if (member) this.#join(topic, entry, member, restoring)
    const sequencer = entry.history
    if (sequencer && since) return sequencer.recover(subscriber, since)
    this.#addLive(entry, subscriber, topic)
    if (sequencer) {
      return sequencer.ready.then(() => ({ position: sequencer.last, recovered: true }))
    }
    const confirmed = entry.confirmed ?? confirmedNow
    if (since) return confirmed.then(() => NOT_RECOVERED)
    entry.joined ??= confirmed.then(() => NOT_KEPT)
    return entry.joined
  }

  /**
   * @internal What `conn.subscribe()` answers for a topic the connection holds already: where
   * the connection is, once its recovery (if one is on its way) is done.
   */
  [HELD](topic: string, subscriber: Subscriber): Promise<Subscription> {
    const sequencer = this.#topics.get(topic)?.history
    return sequencer ? sequencer.held(subscriber) : Promise.resolve(NOT_KEPT)
  }

  /** @internal This hub's member `id` of `topic`, if it is one. */
  [MEMBER_OF](topic: string, id: string): PresenceMember | undefined {
    return this.#topics.get(topic)?.presence?.local.get(id)
  }

  /** @internal A connection's member of a topic it holds joins again, with other metadata. */
  [REJOIN](topic: string, member: PresenceMember): void {
    const entry = this.#topics.get(topic)
    if (entry) this.#join(topic, entry, member, false)
  }

  /**
   * @internal The presence view of a held topic (made on first use, and loaded from the
   * backplane then), kept as long as the topic is held: every change of it is a `'presence'`
   * event, dispatched synchronously, so a reader of `members` plus the later events sees it all.
   */
  [PRESENCE_VIEW](topic: string, entry: Topic | undefined = this.#topics.get(topic)): PresenceView {
    if (!entry) throw new Error(`The topic '${topic}' is not held here: subscribe to it first`)
    if (entry.presence) return entry.presence
    const shared = this.#backplane?.presence
    const view: PresenceView = new PresenceView((joins, leaves) => {
      // A view dropped with its topic (the last subscriber left while its read was on its way)
      // reports nothing more: the topic is not held, and its next view starts afresh.
      if (this.#topics.get(topic)?.presence === view) {
        this.dispatchEvent(new PresenceEvent(topic, joins, leaves))
      }
    }, !shared)
    entry.presence = view
    if (shared) this.#load(topic, entry)
    return view
  }

  /** A member of this hub joins `topic` (or again, with other metadata). */
  #join(topic: string, entry: Topic, member: PresenceMember, restoring: boolean): void {
    const view = this[PRESENCE_VIEW](topic, entry)
    const current = view.local.get(member.id)
    if (current && sameMember(current, member)) return
    // A wake rebuilds what was there: nothing changed, for the app or the backplane.
    view.joinLocal(member, restoring)
    if (!restoring) this.#share(topic, member)
  }

  /** Tells the backplane of this hub's member; a fault is an outage, never the caller's throw. */
  #share(topic: string, member: PresenceMember): void {
    const shared = this.#backplane?.presence
    if (!shared) return
    try {
      shared.join(topic, member)
    } catch (err) {
      this.#reportDown(err)
    }
  }

  /**
   * (Re)reads the members of a held topic, once the backplane confirmed its subscription (so
   * that every diff published after the read arrives). A failed read is an outage: the view is
   * read again when the backplane is back, or when its members are asked for.
   */
  #load(topic: string, entry: Topic): Promise<void> {
    const view = entry.presence as PresenceView
    const backplane = this.#backplane
    const shared = backplane?.presence
    if (!shared) {
      view.localOnly()
      return confirmedNow
    }
    const loading = view.load(async () => {
      await entry.confirmed
      if (this.#backplane !== backplane) throw new Error('The backplane was closed meanwhile')
      return shared.read(topic)
    })
    loading.catch((err: unknown) => {
      if (this.#backplane === backplane) this.#reportDown(err)
    })
    return loading
  }

  /** @internal The topic's history options; throws what is wrong with them. */
  [HISTORY_OF](topic: string): HistoryOptions | undefined {
    return this.#history ? this.#historyOf(topic) : undefined
  }

  #addLive(entry: Topic, subscriber: Subscriber, topic: string): void {
    const tree = subscriber[TREE]
    if (tree) {
      const members = entry.trees.get(tree) ?? new Set()
      entry.trees.set(tree, members)
      members.add(subscriber)
      subscriber[ENTER_TREE](topic)
    } else {
      entry.members.add(subscriber)
    }
  }

  /**
   * @internal A connection leaves a topic; with its member id (`id`), its member leaves too,
   * when it is one.
   */
  [LEAVE](topic: string, subscriber: Subscriber, id?: string): void {
    const entry = this.#topics.get(topic)
    if (!entry) return
    if (id !== undefined && entry.presence?.local.has(id)) {
      entry.presence.leaveLocal(id)
      const shared = this.#backplane?.presence
      if (shared) {
        try {
          shared.leave(topic, id)
        } catch (err) {
          this.#reportDown(err)
        }
      }
    }
    if (!entry.history?.leave(subscriber)) {
      const tree = subscriber[TREE]
      if (tree) {
        const members = entry.trees.get(tree)
        members?.delete(subscriber)
        if (members?.size === 0) entry.trees.delete(tree)
      } else {
        entry.members.delete(subscriber)
      }
    }
    if (entry.members.size > 0 || entry.trees.size > 0 || entry.history?.recovering?.size) return
    this.#topics.delete(topic)
    const backplane = this.#backplane
    if (backplane) this.#guard(() => backplane.unsubscribe(topic))
  }

  /** @internal Publishes from a connection (which does not get its own message), or from outside. */
  [PUBLISH_FROM](sender: Subscriber | undefined, topic: string, data: MessageData): void {
    const refused = topicNameError(topic)
    if (refused) throw refused
    if (typeof data !== 'string' && !(data instanceof Uint8Array)) {
      throw new TypeError(
        'publish() takes a string or a Uint8Array (use new Uint8Array(buffer) for an ArrayBuffer)',
      )
    }
    if (this.#history !== undefined) {
      const entry = this.#topics.get(topic)
      const options = entry ? entry.options : this.#historyOf(topic)
      if (options) {
        this.#publishKept(sender, topic, data, options, entry)
        return
      }
    }
    this.#deliverLocal(sender, topic, data)
    const backplane = this.#backplane
    if (backplane) {
      try {
        backplane.publish(topic, data, sender)
      } catch (err) {
        this.#reportDown(err)
      }
    }
  }

  /**
   * A message of a topic that keeps history: the backplane's history gives it its position and
   * sends it to every instance, this one included; else this hub's store gives it one, and it
   * is delivered here at once.
   */
  #publishKept(
    sender: Subscriber | undefined,
    topic: string,
    data: MessageData,
    options: HistoryOptions,
    entry: Topic | undefined,
  ): void {
    const shared = this.#backplane?.history
    if (shared) {
      try {
        shared.publish(topic, data, options, sender)
      } catch (err) {
        this.#reportDown(err)
      }
      return
    }
    const position = this.#store().append(topic, data, options)
    entry?.history?.local(sender, data, position)
  }

  // The hot path of a topic without history: kept as small as it was, for V8 to inline it.
  #deliverLocal(sender: Subscriber | undefined, topic: string, data: MessageData): void {
    const entry = this.#topics.get(topic)
    if (!entry) return
    for (const member of entry.members) if (member !== sender) member[DELIVER](data)
    if (entry.trees.size === 0) return
    for (const tree of entry.trees.keys()) {
      if (sender && sender[TREE] === tree) sender[PUBLISH_NATIVE](topic, data)
      else tree.publish(topic, data)
    }
    this.#checkBacklogs(entry)
  }

  /** A topic with history's delivery, once framed: its sender may be recovering, outside the tree. */
  #fanOut(entry: Topic, sender: Subscriber | undefined, topic: string, data: MessageData): void {
    for (const member of entry.members) if (member !== sender) member[DELIVER](data)
    if (entry.trees.size === 0) return
    for (const [tree, members] of entry.trees) {
      // Through the sender only where it is in the runtime's tree: the runtime skips it there.
      if (sender && members.has(sender)) sender[PUBLISH_NATIVE](topic, data)
      else tree.publish(topic, data)
    }
    this.#checkBacklogs(entry)
  }

  #historyOf(topic: string): HistoryOptions | undefined {
    return checkHistoryOptions(topic, (this.#history as TopicsHistoryOptions).history(topic))
  }

  /** The hub's own store: the one its owner gave, else memory. */
  #store(): HistoryStore {
    const own = this[HISTORY_STORE]
    if (own) return own
    this.#memory ??= new MemoryHistory((topic) =>
      this.#history ? this.#historyOf(topic) : undefined,
    )
    return this.#memory
  }

  #read(
    topic: string,
    since: Position | undefined,
    limit: number,
  ): HistoryRead | Promise<HistoryRead> {
    const shared = this.#backplane?.history
    return shared ? shared.read(topic, since, limit) : this.#store().read(topic, since, limit)
  }

  /** Sets up the delivery of a topic that keeps history. */
  #keep(entry: Topic, options: HistoryOptions | undefined, topic: string): void {
    entry.options = options
    if (options) entry.history = this.#sequencer(topic, entry)
  }

  #sequencer(topic: string, entry: Topic): Sequencer {
    const topics = this
    const host: SequencerHost = {
      fanOut: (sender, data) => this.#fanOut(entry, sender, topic, data),
      get raw() {
        return topics.#frame === rawFrame
      },
      frame: (delivery) => {
        try {
          return this.#frame(delivery)
        } catch (err) {
          this.#appFailed(
            `useHistory()'s frame threw; this delivery of '${topic}' was sent to nobody`,
            err,
          )
          return undefined
        }
      },
      read: (since, limit) => this.#read(topic, since, limit),
      gap: (position, reason, lost) =>
        this.dispatchEvent(new GapEvent(topic, position, reason, lost)),
      fault: (error) => this.#reportDown(error),
      joinLive: (subscriber) => {
        if (this.#topics.get(topic) === entry) this.#addLive(entry, subscriber, topic)
      },
    }
    return new Sequencer(topic, host, entry.confirmed ?? confirmedNow)
  }

  /**
   * A runtime's tree sends without asking the core, so the slow-subscriber bound is applied to
   * its subscribers once per turn of the event loop in which the topic was published: a slow
   * one is closed with 1008 at most one turn of publishes past its bound. The check reads each
   * subscriber's buffered amount, far cheaper than the sends the tree saves.
   */
  #checkBacklogs(entry: Topic): void {
    this.#published.add(entry)
    if (this.#backlogCheckArmed) return
    this.#backlogCheckArmed = true
    setTimeout(() => {
      this.#backlogCheckArmed = false
      const published = [...this.#published]
      this.#published.clear()
      for (const topic of published) {
        for (const members of topic.trees.values()) {
          for (const member of members) member[CHECK_BACKLOG]()
        }
      }
    }, 0)
  }

  #subscribeRemote(topic: string): Promise<void> {
    const backplane = this.#backplane
    if (!backplane) return confirmedNow
    // A failed subscription must not fail conn.subscribe(): local delivery goes on, and the
    // backplane restores the topic when the engine is back.
    return this.#guard(() => backplane.subscribe(topic))
  }

  #guard(action: () => Promise<void>): Promise<void> {
    try {
      return action().catch((err) => this.#reportDown(err))
    } catch (err) {
      this.#reportDown(err)
      return confirmedNow
    }
  }

  /** An app's function failed: reported to `onError`, else the logger; it breaks nothing else. */
  #appFailed(what: string, error: unknown): void {
    try {
      if (this.#options.onError) this.#options.onError(error)
      else
        (this.#options.logger ?? console).error(
          `${what} (it breaks nothing else): ${describeError(error)}`,
          error,
        )
    } catch {
      // A broken handler must not break the backplane's recovery.
    }
  }

  #reportDown(error: unknown): void {
    if (this.#down) return
    this.#down = true
    try {
      if (this.#options.onError) this.#options.onError(error)
      else
        (this.#options.logger ?? console).error(
          `Topics backplane failed; local delivery goes on, and the topics are restored when it is back: ${describeError(error)}`,
        )
    } catch {
      // A broken handler must not break publishing.
    }
  }
}
