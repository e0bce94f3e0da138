/**
 * The test kit's backplane: an in-memory bus shared by several hubs, as one Redis is by several
 * instances, that keeps history and presence and loses messages on demand. Exported by
 * `@handshake/core/testing`.
 * @module
 */
import type { MessageData } from './contracts.js'
import { type HistoryOptions, type HistoryRead, MemoryHistory, type Position } from './history.js'
import { type PresenceMember, sameMember } from './presence.js'
import type { Backplane, BackplaneHistory, BackplanePresence, BackplaneSink } from './topics.js'

/**
 * An in-memory bus with history and presence, shared by hubs: each gets a {@link Backplane} of
 * its own with {@link MemoryBus.backplane}. Its faults are the ones a recovery must survive.
 *
 * Presence is kept as Redis keeps it: a set of members per instance (backplane) and topic, and
 * diffs sent to the other instances holding the topic. Its faults act as Redis's do: a cut
 * instance's joins and leaves are lost, and it reads nothing, until it is restored, when it
 * asserts its members again (replacing its set) before it reports `up`; {@link MemoryBus.expire}
 * drops an instance's members as a reaper does once its deadline passed; {@link MemoryBus.reset}
 * loses every member without a word, as a store restarted empty.
 *
 * @example
 * ```ts
 * const bus = memoryBackplane()
 * const a = createHub(), b = createHub()
 * a.topics.useHistory({ history: () => ({ size: 100, ttl: 60_000 }) })
 * b.topics.useHistory({ history: () => ({ size: 100, ttl: 60_000 }) })
 * await a.topics.useBackplane(bus.backplane())
 * await b.topics.useBackplane(bus.backplane())
 * bus.drop(1) // the next message reaches no hub live: they read it back from the history
 * ```
 */
export interface MemoryBus {
  /** A backplane of this bus, for one hub: `await hub.topics.useBackplane(bus.backplane())`. */
  backplane(): Backplane
  /**
   * The next `count` messages published on the bus reach no hub's subscription (their history
   * keeps them), as pub/sub messages lost on the way.
   */
  drop(count: number): void
  /**
   * Cuts one backplane's subscription, as a killed pub/sub connection: it reports the fault
   * (`sink.down`), and what is published meanwhile does not reach it, until
   * {@link MemoryBus.restore}.
   */
  cut(backplane: Backplane): void
  /** Gives a cut backplane its subscription back, and reports it (`sink.up`), as Redis does. */
  restore(backplane: Backplane): void
  /**
   * Loses every topic's history and every member, as a store restarted empty: the next messages
   * start new epochs, and a read lists no member until its instance asserts it again (after a
   * cut and restore, as a restarted Redis's clients reconnect). No diff is sent.
   */
  reset(): void
  /**
   * The members of `backplane`'s instance are reaped, as another instance does once its
   * deadline passed (it lost the store for longer than the bound): they are removed and their
   * leaves sent to every other instance holding their topic. It asserts them again when it is
   * restored after a cut.
   * @throws Error when the backplane is not cut: a live instance keeps refreshing its members
   */
  expire(backplane: Backplane): void
  /** How many messages were published on the bus, and how many of them {@link MemoryBus.drop} lost. */
  readonly counts: { readonly published: number; readonly dropped: number }
}

/** One hub's backplane on a {@link MemoryBus}. */
class BusBackplane implements Backplane {
  sink: BackplaneSink | undefined
  readonly topics = new Set<string>()
  cut = false
  closed = false
  readonly history: BackplaneHistory
  readonly presence: BackplanePresence

  constructor(readonly bus: Bus) {
    this.presence = {
      join: (topic, member) => bus.join(this, topic, member),
      leave: (topic, id) => bus.leave(this, topic, id),
      read: async (topic) => {
        await undefined
        if (this.closed) throw new Error('This backplane was closed')
        if (this.cut) throw new Error('memoryBackplane: the connection was cut')
        return bus.listed(topic)
      },
    }
    this.history = {
      publish: (topic, data, options, origin) => bus.publish(this, topic, data, options, origin),
      read: async (topic, since, limit) => {
        await undefined
        if (this.closed) throw new Error('This backplane was closed')
        return bus.read(this, topic, since, limit)
      },
    }
  }

  start(sink: BackplaneSink): void {
    if (this.sink) throw new Error('This backplane is in use already: give each hub its own')
    this.sink = sink
  }

  async subscribe(topic: string): Promise<void> {
    await undefined
    if (!this.closed) this.topics.add(topic)
  }

  async unsubscribe(topic: string): Promise<void> {
    this.topics.delete(topic)
  }

  publish(topic: string, data: MessageData): void {
    this.bus.publish(this, topic, data, undefined, undefined)
  }

  async close(): Promise<void> {
    // A graceful end: its members leave every view at once.
    this.bus.reap(this)
    this.closed = true
    this.topics.clear()
    this.bus.members.delete(this)
  }
}

class Bus implements MemoryBus {
  readonly members = new Set<BusBackplane>()
  #store = new MemoryHistory()
  // Each instance's members of each topic: topic → instance → id → member.
  #presence = new Map<string, Map<BusBackplane, Map<string, PresenceMember>>>()
  // A member's own history publishes whose copy has not come back to it yet: a read gives it
  // their origin, so that the sender is skipped, as Redis does.
  #own = new Map<string, { from: BusBackplane; origin: object }>()
  #dropping = 0
  #published = 0
  #dropped = 0

  backplane(): Backplane {
    const backplane = new BusBackplane(this)
    this.members.add(backplane)
    return backplane
  }

  drop(count: number): void {
    if (!Number.isSafeInteger(count) || count < 0) {
      throw new RangeError(`drop(count) takes a whole number of messages; it got ${count}`)
    }
    this.#dropping += count
  }

  cut(backplane: Backplane): void {
    const member = this.#member(backplane)
    if (member.cut) return
    member.cut = true
    member.sink?.down(new Error('memoryBackplane: the subscription was cut'))
  }

  restore(backplane: Backplane): void {
    const member = this.#member(backplane)
    if (!member.cut) return
    member.cut = false
    queueMicrotask(() => {
      if (member.closed || !member.sink) return
      this.#assert(member, member.sink)
      member.sink.up()
    })
  }

  reset(): void {
    this.#store = new MemoryHistory()
    this.#own.clear()
    this.#presence = new Map()
  }

  expire(backplane: Backplane): void {
    const member = this.#member(backplane)
    if (!member.cut) {
      throw new Error(
        'expire(backplane) reaps an instance that lost the store for longer than the bound: cut() it first (a live instance keeps its members)',
      )
    }
    this.reap(member)
  }

  /** Removes an instance's members and sends their leaves. */
  reap(from: BusBackplane): void {
    for (const [topic, instances] of this.#presence) {
      const own = instances.get(from)
      if (!own) continue
      instances.delete(from)
      if (instances.size === 0) this.#presence.delete(topic)
      if (own.size > 0) this.#diff(from, topic, [], [...own.values()])
    }
  }

  /** Every member of `topic`, of every instance, each once. */
  listed(topic: string): PresenceMember[] {
    const all = new Map<string, PresenceMember>()
    for (const own of this.#presence.get(topic)?.values() ?? []) {
      for (const [id, member] of own) all.set(id, member)
    }
    return [...all.values()]
  }

  join(from: BusBackplane, topic: string, member: PresenceMember): void {
    // An instance that lost the store loses its writes: it asserts them again on its return.
    if (from.closed || from.cut) return
    const own = this.#hash(from, topic)
    const old = own.get(member.id)
    if (old && sameMember(old, member)) return
    own.set(member.id, member)
    this.#diff(from, topic, [member], old ? [old] : [])
  }

  leave(from: BusBackplane, topic: string, id: string): void {
    if (from.closed || from.cut) return
    const instances = this.#presence.get(topic)
    const own = instances?.get(from)
    const old = own?.get(id)
    if (!old || !own || !instances) return
    own.delete(id)
    if (own.size === 0) this.#forget(from, topic)
    this.#diff(from, topic, [], [old])
  }

  /** An instance back from a cut replaces its members with the ones its hub lists. */
  #assert(from: BusBackplane, sink: BackplaneSink): void {
    for (const topic of sink.topics()) {
      const listed = sink.members(topic)
      const own = this.#hash(from, topic)
      const leaves = [...own.values()].filter((old) => !listed.some((m) => m.id === old.id))
      const joins = listed.filter((member) => {
        const old = own.get(member.id)
        return !old || !sameMember(old, member)
      })
      const replaced = joins.flatMap((member) => own.get(member.id) ?? [])
      own.clear()
      for (const member of listed) own.set(member.id, member)
      if (own.size === 0) this.#forget(from, topic)
      if (joins.length > 0 || leaves.length > 0)
        this.#diff(from, topic, joins, [...leaves, ...replaced])
    }
  }

  #forget(from: BusBackplane, topic: string): void {
    const instances = this.#presence.get(topic)
    instances?.delete(from)
    if (instances?.size === 0) this.#presence.delete(topic)
  }

  #hash(from: BusBackplane, topic: string): Map<string, PresenceMember> {
    let instances = this.#presence.get(topic)
    if (!instances) {
      instances = new Map()
      this.#presence.set(topic, instances)
    }
    let own = instances.get(from)
    if (!own) {
      own = new Map()
      instances.set(from, own)
    }
    return own
  }

  /** Sends a presence diff to every other instance holding `topic`, later, as over a network. */
  #diff(
    from: BusBackplane,
    topic: string,
    joins: readonly PresenceMember[],
    leaves: readonly PresenceMember[],
  ): void {
    for (const member of this.members) {
      if (member === from) continue
      queueMicrotask(() => {
        if (member.closed || member.cut || !member.topics.has(topic)) return
        member.sink?.presence(topic, joins, leaves)
      })
    }
  }

  get counts() {
    return { published: this.#published, dropped: this.#dropped }
  }

  read(from: BusBackplane, topic: string, since: Position | undefined, limit: number): HistoryRead {
    const read = this.#store.read(topic, since, limit)
    if (this.#own.size === 0) return read
    const messages = read.messages.map((message) => {
      const own = this.#own.get(ownKey(topic, { epoch: read.epoch, offset: message.offset }))
      return own?.from === from ? { ...message, origin: own.origin } : message
    })
    return { ...read, messages }
  }

  /**
   * Sends to every other member subscribed to `topic`; with history options, appends first and
   * sends to every member, the publisher included, with `origin` on its own copy.
   */
  publish(
    from: BusBackplane,
    topic: string,
    data: MessageData,
    options: HistoryOptions | undefined,
    origin: object | undefined,
  ): void {
    if (from.closed) return
    this.#published++
    const position = options ? this.#store.append(topic, data, options) : undefined
    const key = position && origin ? ownKey(topic, position) : undefined
    if (key && origin) this.#own.set(key, { from, origin })
    if (this.#dropping > 0) {
      this.#dropping--
      this.#dropped++
      return
    }
    // Each member gets its own copy, later, as over a network.
    for (const member of this.members) {
      if (member === from && !position) continue
      const copy = typeof data === 'string' ? data : data.slice()
      queueMicrotask(() => {
        if (member.closed || member.cut || !member.topics.has(topic)) return
        if (member === from && key) this.#own.delete(key)
        member.sink?.message(topic, copy, position, member === from ? origin : undefined)
      })
    }
  }

  #member(backplane: Backplane): BusBackplane {
    if (!(backplane instanceof BusBackplane) || !this.members.has(backplane)) {
      throw new TypeError('This backplane is not one of this bus: use the one bus.backplane() gave')
    }
    return backplane
  }
}

const ownKey = (topic: string, position: Position) =>
  `${position.epoch}:${position.offset}:${topic}`

/**
 * A shared in-memory backplane with history, for tests: several hubs on one bus behave as
 * instances behind one Redis, and its faults ({@link MemoryBus.drop}, {@link MemoryBus.cut},
 * {@link MemoryBus.reset}) make a recovery bug fail in a unit test.
 */
export function memoryBackplane(): MemoryBus {
  return new Bus()
}
