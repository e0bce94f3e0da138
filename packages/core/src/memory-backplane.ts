/**
 * The test kit's backplane: an in-memory bus shared by several hubs, as one Redis is by several
 * instances, that keeps history and loses messages on demand. Exported by
 * `@handshake/core/testing`.
 * @module
 */
import type { MessageData } from './contracts.js'
import { type HistoryOptions, type HistoryRead, MemoryHistory, type Position } from './history.js'
import type { Backplane, BackplaneHistory, BackplaneSink } from './topics.js'

/**
 * An in-memory bus with history, shared by hubs: each gets a {@link Backplane} of its own with
 * {@link MemoryBus.backplane}. Its faults are the ones a recovery must survive.
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
  /** Loses every topic's history, as a store restarted empty: the next messages start new epochs. */
  reset(): void
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

  constructor(readonly bus: Bus) {
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
    this.closed = true
    this.topics.clear()
    this.bus.members.delete(this)
  }
}

class Bus implements MemoryBus {
  readonly members = new Set<BusBackplane>()
  #store = new MemoryHistory()
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
      if (!member.closed) member.sink?.up()
    })
  }

  reset(): void {
    this.#store = new MemoryHistory()
    this.#own.clear()
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
