/**
 * The delivery of one topic that keeps history, on one hub: every local subscriber gets its
 * messages in offset order, each once, framed once per delivery. Messages from a backplane are
 * put in order here: a repeat is dropped, a jump is filled from the history before anything
 * newer goes out, and what cannot be filled is a gap the subscribers are told about. A
 * subscriber that recovers from a position buffers the live deliveries while its missed
 * messages are read and sent, and goes live once they are drained.
 * @internal
 * @module
 */
import type { MessageData } from './contracts.js'
import type { Delivery, HistoryRead, Position, Subscription } from './history.js'
import { DELIVER } from './internal.js'
import type { Subscriber } from './topics.js'

/** How many messages one read of a history asks for. */
export const READ_PAGE = 512
/**
 * The most backplane messages held while a gap cannot be filled (the history cannot be read):
 * past it, what is missing is told as a gap and the held messages are delivered, rather than
 * holding everything newer for as long as the history fails.
 */
export const MAX_HELD = 10_000

/**
 * The most live deliveries buffered for one recovering subscriber while what it missed is read:
 * past it (the history read hangs while the backplane keeps delivering), it is told a gap and
 * goes live, and its `subscribe()` answers `recovered: false`.
 */
export const MAX_RECOVERY_BUFFER = 10_000

/** What a {@link Sequencer} needs of its hub. @internal */
export interface SequencerHost {
  /** Sends framed data to the topic's live subscribers (not the recovering ones), but `sender`. */
  fanOut(sender: Subscriber | undefined, data: MessageData): void
  /** The app's frame: what a subscriber is sent for a delivery. */
  frame(delivery: Delivery): MessageData | undefined
  /** True when there is no frame: a message is sent as its raw data, a gap as nothing. */
  readonly raw: boolean
  /** Reads the topic's history from wherever the hub keeps it now. */
  read(since: Position | undefined, limit: number): HistoryRead | Promise<HistoryRead>
  /** A live gap: the hub's 'gap' event. */
  gap(position: Position, reason: 'trimmed' | 'epoch', lost: number | undefined): void
  /** The history could not be read (an engine fault). */
  fault(error: unknown): void
  /** The recovering subscriber goes live: it joins the topic's subscribers (and the runtime tree). */
  joinLive(subscriber: Subscriber): void
}

/** A message from a backplane, waiting for its turn. */
interface Pending {
  readonly data: MessageData
  readonly position: Position
  readonly origin: object | undefined
  /** How many reads had been started when it arrived. */
  readonly reads: number
}

/** A delivery buffered for a recovering subscriber: framed data, or nothing to send. */
interface Buffered {
  readonly position: Position
  readonly gap: boolean
  /** A gap's reason. */
  readonly reason?: 'trimmed' | 'epoch'
  readonly data: MessageData | undefined
  /** The subscriber's own message: it is not sent back to it, by the buffer or by the read. */
  readonly own?: boolean
}

const stale = (position: Position, last: Position) =>
  position.epoch === last.epoch && position.offset <= last.offset

/** One subscriber's recovery from a position: where it is, and what came live meanwhile. */
class Recovery {
  /** The live deliveries made meanwhile, in order. */
  readonly buffer: Buffered[] = []
  /** The buffered deliveries before this index are the hub's up to where the history is read. */
  skip = 0
  /**
   * Set while it is ahead of its hub: resolves once the hub reached `position`. `refill` while
   * it waits for the hub's read of the history (to move to the history's new epoch): a read
   * that fails answers its `subscribe()`.
   */
  ahead: { position: Position; resolve: () => void; refill: boolean } | undefined
  recovered = true
  /**
   * A gap it has not been sent the notice of yet (what the history no longer holds, or what
   * the publish bound dropped): it goes out just before its next delivery, or when it goes live.
   */
  lost: { position: Position; reason: 'trimmed' | 'epoch' } | undefined
  /** What `subscribe()` answers; settled once, when it goes live or leaves. */
  readonly answer: Promise<Subscription>
  #settle!: (subscription: Subscription) => void

  /**
   * @param subscriber - who recovers
   * @param cursor - the position of the last thing it was given (first, where it comes from)
   */
  constructor(
    readonly subscriber: Subscriber,
    public cursor: Position,
  ) {
    this.answer = new Promise((resolve) => {
      this.#settle = resolve
    })
  }

  /** Answers `subscribe()` with where it is now (the first call only). */
  settle(recovered = this.recovered): void {
    this.#settle({ position: this.cursor, recovered })
  }
}

/**
 * The per-topic state of a topic that keeps history, while it has local subscribers.
 * @internal
 */
export class Sequencer {
  /** The position of the last delivery of this hub; undefined until it was first read. */
  last: Position | undefined
  /** Settles once {@link Sequencer.last} is known (or could not be read). */
  ready: Promise<void>
  /** The subscribers recovering from a position, each with what was delivered meanwhile. */
  recovering: Map<Subscriber, Recovery> | undefined
  // Backplane messages held while `last` is unknown or a gap is being filled.
  #pending: Pending[] = []
  #filling = false
  // The backplane came back during a fill: read once more before releasing.
  #again = false
  #reads = 0
  // The recoveries on their way, for a second subscribe of the same subscriber.
  readonly #recoveries = new Map<Subscriber, Promise<Subscription>>()
  readonly #topic: string
  readonly #host: SequencerHost

  /**
   * @param topic - the topic
   * @param host - the hub's side
   * @param confirmed - settles once the backplane confirmed the topic: then its latest position
   *   is read
   */
  constructor(topic: string, host: SequencerHost, confirmed: Promise<void>) {
    this.#topic = topic
    this.#host = host
    this.#filling = true
    this.ready = confirmed.then(() => this.#init())
  }

  async #init(): Promise<void> {
    this.#reads++
    try {
      const read = await this.#host.read(undefined, 0)
      // A local publish during the read already set a newer one. Messages that arrived since
      // the subscription was confirmed are delivered, though the read may count them already.
      const first = this.#pending[0]?.position
      const offset =
        first && first.epoch === read.epoch && first.offset <= read.offset
          ? first.offset - 1
          : read.offset
      this.last ??= { epoch: read.epoch, offset }
    } catch (err) {
      this.#host.fault(err)
    }
    this.#filling = false
    if (!this.last) return
    // The backplane came back while the position was read: that read may be from before the
    // outage, so what was published meanwhile is read before anything newer is delivered.
    if (this.#again) void this.#fill()
    else this.#release()
  }

  /** A message of this hub's own store (appended here, in order): delivered at once. */
  local(sender: Subscriber | undefined, data: MessageData, position: Position): void {
    this.last = position
    if (this.#host.raw && !this.recovering?.size) {
      // No frame and nobody recovering: no delivery to make.
      this.#host.fanOut(sender, data)
      return
    }
    this.#emit(sender, { type: 'message', topic: this.#topic, data, position })
  }

  /** A message from the backplane: delivered in offset order, once. */
  remote(data: MessageData, position: Position, origin: object | undefined): void {
    const last = this.last
    if (!this.#filling && last && this.#pending.length === 0) {
      if (position.epoch === last.epoch) {
        if (position.offset <= last.offset) return
        if (position.offset === last.offset + 1) {
          this.last = position
          this.#emit(origin as Subscriber | undefined, {
            type: 'message',
            topic: this.#topic,
            data,
            position,
          })
          return
        }
      }
    }
    this.#pending.push({ data, position, origin, reads: this.#reads })
    if (this.#pending.length > MAX_HELD) {
      this.#giveUp()
      return
    }
    // Held while the position is unknown or a gap is being filled; otherwise (a read that
    // failed left messages behind) this one tries again.
    if (!this.#filling) {
      if (this.last) this.#release()
      else this.refill()
    }
  }

  /**
   * The backplane came back after an outage: what was published meanwhile is read before
   * anything newer is delivered.
   */
  refill(): void {
    if (this.#filling) {
      this.#again = true
      return
    }
    if (!this.last) {
      this.#filling = true
      this.ready = this.#init()
      return
    }
    void this.#fill()
  }

  /**
   * Too much is held: each jump between the held messages is told as a gap, and they are
   * delivered in order. A read still on its way then finds nothing newer to deliver.
   */
  #giveUp(): void {
    const held = this.#pending
    this.#pending = []
    for (const next of held) {
      const last = this.last
      if (last && stale(next.position, last)) continue
      if (
        last &&
        (next.position.epoch !== last.epoch || next.position.offset !== last.offset + 1)
      ) {
        const position = { epoch: next.position.epoch, offset: next.position.offset - 1 }
        const same = position.epoch === last.epoch
        this.#gap(
          position,
          same ? 'trimmed' : 'epoch',
          same ? position.offset - last.offset : undefined,
        )
      }
      this.last = next.position
      this.#emit(next.origin as Subscriber | undefined, {
        type: 'message',
        topic: this.#topic,
        data: next.data,
        position: next.position,
      })
    }
  }

  /** Delivers the held messages in order, filling from the history where one is missing. */
  #release(): void {
    while (this.#pending.length > 0) {
      const next = this.#pending[0] as Pending
      const last = this.last as Position
      if (stale(next.position, last)) {
        this.#pending.shift()
        continue
      }
      if (next.position.epoch === last.epoch && next.position.offset === last.offset + 1) {
        this.#pending.shift()
        this.last = next.position
        this.#emit(next.origin as Subscriber | undefined, {
          type: 'message',
          topic: this.#topic,
          data: next.data,
          position: next.position,
        })
        continue
      }
      void this.#fill()
      return
    }
  }

  /** Reads the history after `last` and delivers what fills the gap, then what was held. */
  async #fill(): Promise<void> {
    this.#filling = true
    for (;;) {
      this.#again = false
      const last = this.last as Position
      const startedAt = ++this.#reads
      let read: HistoryRead
      try {
        read = await this.#host.read(last, READ_PAGE)
      } catch (err) {
        // The messages stay held: the backplane's return (or the next message) tries again.
        this.#filling = false
        this.#host.fault(err)
        this.#stalled()
        return
      }
      // The held copies' senders: a copy of this hub's own message that came meanwhile carries
      // it, though the read may not (the backplane forgets it once the copy came).
      let senders: Map<number, object> | undefined
      for (const held of this.#pending) {
        if (held.origin !== undefined && held.position.epoch === read.epoch) {
          senders ??= new Map()
          senders.set(held.position.offset, held.origin)
        }
      }
      if (read.epoch === last.epoch && read.complete && read.offset >= last.offset) {
        for (const message of read.messages) this.#fromHistory(read.epoch, message, senders)
      } else {
        // What the history holds no longer starts right after `last`.
        const first = read.messages[0]
        const position = { epoch: read.epoch, offset: first ? first.offset - 1 : read.offset }
        if (!stale(position, last)) {
          const reason = read.epoch === last.epoch ? 'trimmed' : 'epoch'
          this.#gap(
            position,
            reason,
            reason === 'trimmed' ? position.offset - last.offset : undefined,
          )
        } else if (read.epoch === last.epoch && read.offset < last.offset) {
          // The history went back in its epoch (a store that lost its latest writes): the
          // offsets to come were given before, to other messages.
          this.#gap({ epoch: read.epoch, offset: read.offset }, 'epoch', undefined)
        }
        for (const message of read.messages) this.#fromHistory(read.epoch, message, senders)
      }
      const current = this.last as Position
      if (
        read.messages.length >= READ_PAGE &&
        read.epoch === current.epoch &&
        current.offset < read.offset
      ) {
        continue
      }
      // What was held. One that arrived before this read started and still does not follow is
      // of an older epoch than the history's (dropped), or was lost from the history (a gap).
      let reread = this.#again
      while (!reread && this.#pending.length > 0) {
        const held = this.#pending[0] as Pending
        const now = this.last as Position
        if (stale(held.position, now)) this.#pending.shift()
        else if (held.position.epoch === now.epoch && held.position.offset === now.offset + 1) {
          this.#pending.shift()
          this.last = held.position
          this.#emit(held.origin as Subscriber | undefined, {
            type: 'message',
            topic: this.#topic,
            data: held.data,
            position: held.position,
          })
        } else if (held.reads >= startedAt) reread = true
        else if (held.position.epoch !== now.epoch) this.#pending.shift()
        else {
          const position = { epoch: now.epoch, offset: held.position.offset - 1 }
          this.#gap(position, 'trimmed', position.offset - now.offset)
        }
      }
      if (!reread) {
        this.#filling = false
        return
      }
    }
  }

  #fromHistory(
    epoch: string,
    message: HistoryRead['messages'][number],
    senders: Map<number, object> | undefined,
  ): void {
    const last = this.last as Position
    const position = { epoch, offset: message.offset }
    if (stale(position, last)) return
    this.last = position
    // A message of this hub's own whose live copy never came back: its sender is skipped.
    this.#emit((message.origin ?? senders?.get(message.offset)) as Subscriber | undefined, {
      type: 'message',
      topic: this.#topic,
      data: message.data,
      position,
    })
  }

  #gap(position: Position, reason: 'trimmed' | 'epoch', lost: number | undefined): void {
    this.last = position
    this.#host.gap(position, reason, lost)
    this.#emit(undefined, { type: 'gap', topic: this.#topic, position, reason })
  }

  /** Frames a delivery once, and sends it to every subscriber but `sender`. */
  #emit(sender: Subscriber | undefined, delivery: Delivery): void {
    const data = this.#host.frame(delivery)
    if (data !== undefined) this.#host.fanOut(sender, data)
    const recovering = this.recovering
    if (!recovering || recovering.size === 0) return
    const position = delivery.position as Position
    const buffered: Buffered =
      delivery.type === 'gap'
        ? { position, gap: true, reason: delivery.reason, data }
        : { position, gap: false, data }
    for (const [subscriber, recovery] of recovering) {
      const ahead = recovery.ahead?.position
      if (ahead) {
        this.#wake(recovery)
        // It has this one already (another hub gave it): nothing to buffer.
        if (stale(position, ahead)) continue
      }
      // Its own message is marked, not left out: the read of what it missed may reach it.
      recovery.buffer.push(
        subscriber === sender ? { position, gap: false, data: undefined, own: true } : buffered,
      )
      if (recovery.buffer.length > MAX_RECOVERY_BUFFER) this.#overflow(recovery, position)
    }
  }

  /**
   * Too much came live while what the subscriber missed is read: it is told that it lost
   * everything up to `position` and goes live from there; the read, when it answers, is
   * ignored.
   */
  #overflow(recovery: Recovery, position: Position): void {
    this.recovering?.delete(recovery.subscriber)
    const reason = position.epoch === recovery.cursor.epoch ? 'trimmed' : 'epoch'
    this.#gapTo(recovery, position, reason)
    recovery.buffer.length = 0
    this.#owed(recovery)
    this.#host.joinLive(recovery.subscriber)
    recovery.settle()
  }

  /**
   * Tells one recovering subscriber of a gap: it is now at `position`. The notice goes out with
   * its next delivery (or when it goes live), after what it was given before.
   */
  #gapTo(recovery: Recovery, position: Position, reason: 'trimmed' | 'epoch'): void {
    recovery.cursor = position
    this.#lose(recovery, position, reason)
  }

  /** A recovering subscriber lost what comes up to `position`: it is owed a gap notice. */
  #lose(recovery: Recovery, position: Position, reason: 'trimmed' | 'epoch'): void {
    recovery.recovered = false
    // One notice for what it lost since its last delivery; a change of epoch among it is told.
    recovery.lost = { position, reason: recovery.lost?.reason === 'epoch' ? 'epoch' : reason }
  }

  /** The framed gap notice a recovering subscriber is owed, if any (none without a frame). */
  #notice(recovery: Recovery): MessageData | undefined {
    const lost = recovery.lost
    if (!lost) return undefined
    return this.#host.frame({ type: 'gap', topic: this.#topic, ...lost })
  }

  /**
   * Sends a recovering subscriber one delivery, after the gap notice it is owed. A delivery the
   * publish bound drops (`slowSubscriber: 'drop'`) is a gap it is told of: never a silent one.
   */
  #pass(recovery: Recovery, data: MessageData, position: Position, reason?: 'epoch'): void {
    // Framed only if it goes out (a run of drops would frame it once per drop).
    const notice = recovery.lost ? () => this.#notice(recovery) : undefined
    if (recovery.subscriber[DELIVER](data, notice) === false) {
      this.#lose(recovery, position, reason ?? 'trimmed')
    } else recovery.lost = undefined
  }

  /** It goes live: the gap notice it is still owed is sent now, past the bound under 'drop'. */
  #owed(recovery: Recovery): void {
    const notice = this.#notice(recovery)
    recovery.lost = undefined
    if (notice !== undefined) recovery.subscriber[DELIVER](notice, undefined, true)
  }

  /** The subscriber left (unsubscribed, closed) while it was recovering. */
  leave(subscriber: Subscriber): boolean {
    const recovery = this.recovering?.get(subscriber)
    if (!recovery) return false
    this.recovering?.delete(subscriber)
    recovery.settle(false)
    // The recovery, if it waits for this hub to catch up, ends now and lets the subscriber go.
    recovery.ahead?.resolve()
    return true
  }

  /** Resolves once this hub has delivered up to `position` (or moved to another epoch). */
  #reach(recovery: Recovery, position: Position, refill = false): Promise<void> {
    return new Promise((resolve) => {
      recovery.ahead = { position, resolve, refill }
      this.#wake(recovery)
    })
  }

  /**
   * The history could not be read: the recoveries that wait for this hub to move to the
   * history's new epoch are answered now (nothing else may move the hub soon: a quiet topic, a
   * backplane that stays up), with `recovered: false`, which the new epoch makes certain. They
   * still wait, out of the live set, for the hub to catch up or move (the next message or read),
   * so that what is on its way to it of the old epoch is not sent to them twice.
   */
  #stalled(): void {
    for (const recovery of this.recovering?.values() ?? []) {
      const ahead = recovery.ahead
      if (!ahead?.refill) continue
      ahead.refill = false
      recovery.recovered = false
      recovery.settle()
    }
  }

  #wake(recovery: Recovery): void {
    const last = this.last
    const ahead = recovery.ahead
    if (!last || !ahead) return
    if (ahead.position.epoch !== last.epoch || ahead.position.offset <= last.offset) {
      recovery.ahead = undefined
      ahead.resolve()
    }
  }

  /**
   * Recovers a subscriber from `since`: the live deliveries are buffered while the missed
   * messages are read and sent, then the buffered ones that are newer, then it goes live.
   */
  recover(subscriber: Subscriber, since: Position): Promise<Subscription> {
    const recovery = new Recovery(subscriber, since)
    this.recovering ??= new Map()
    this.recovering.set(subscriber, recovery)
    const answer = recovery.answer
    this.#recoveries.set(subscriber, answer)
    const done = () => {
      if (this.#recoveries.get(subscriber) === answer) this.#recoveries.delete(subscriber)
    }
    void answer.then(done)
    void this.#recover(recovery)
    return answer
  }

  /**
   * What a subscriber that holds the topic already is answered when it subscribes again: its
   * recovery's answer while one is on its way (the hub's position would be ahead of what it
   * was given), else the hub's position once known.
   */
  held(subscriber: Subscriber): Promise<Subscription> {
    const recovery = this.#recoveries.get(subscriber)
    if (recovery) return recovery
    return this.ready.then(() => ({ position: this.last, recovered: true }))
  }

  async #recover(recovery: Recovery): Promise<void> {
    const { subscriber, buffer } = recovery
    // False once it went live or left: what it was waiting for is then of no use.
    const here = () => this.recovering?.get(subscriber) === recovery
    try {
      await this.ready
      if (!here()) return
      const upTo = this.last
      recovery.skip = buffer.length
      // What it published before this point has its place in the history read below: it is
      // not sent back to it (conn.publish() excludes the sender).
      const own = new Set<number>()
      for (const item of buffer)
        if (item.own && item.position.epoch === upTo?.epoch) own.add(item.position.offset)
      const since = recovery.cursor
      // Without a position (the history could not be read), it goes on from the live messages.
      if (!upTo) recovery.recovered = false
      else if (since.epoch === upTo.epoch && since.offset > upTo.offset) {
        // Ahead of this hub (it was given them by another one that is further on): once the
        // history confirms its position, it waits for this hub to catch up, so that nothing
        // comes twice.
        const latest = await this.#host.read(undefined, 0)
        if (!here()) return
        if (latest.epoch === since.epoch && latest.offset < since.offset) {
          // The history itself is behind it: what it was given is lost, and the offsets after
          // the history's latest will be given to other messages.
          this.#gapTo(recovery, upTo, 'epoch')
        } else {
          // The hub reads the history now rather than wait for its next message, which may
          // never come (what was on its way to it lost, a quiet topic). When the history moved
          // to another epoch, this hub, still in the old one, would deliver what is on its way
          // up to `since`, which it was given already: it moves to the new epoch instead, and
          // the subscriber gets that gap notice.
          const reached = this.#reach(recovery, since, latest.epoch !== since.epoch)
          this.refill()
          await reached
        }
        if (!here()) return
      }
      while (
        upTo &&
        (recovery.cursor.epoch !== upTo.epoch || recovery.cursor.offset < upTo.offset)
      ) {
        const cursor = recovery.cursor
        const wanted =
          cursor.epoch === upTo.epoch ? Math.min(READ_PAGE, upTo.offset - cursor.offset) : READ_PAGE
        const read = await this.#host.read(cursor, wanted)
        if (!here()) return
        if (read.epoch !== upTo.epoch) {
          // The history moved on to an epoch this hub has not delivered yet: the hub's own gap
          // notice follows, and this subscriber starts where the hub is.
          this.#gapTo(recovery, upTo, 'epoch')
          break
        }
        const follows = cursor.epoch === read.epoch && cursor.offset <= read.offset
        if (!read.complete || !follows) {
          const first = read.messages[0]
          const from = first ? first.offset - 1 : read.offset
          this.#gapTo(
            recovery,
            { epoch: upTo.epoch, offset: Math.min(from, upTo.offset) },
            follows ? 'trimmed' : 'epoch',
          )
        }
        const before = recovery.cursor
        for (const message of read.messages) {
          if (message.offset <= recovery.cursor.offset || message.offset > upTo.offset) continue
          const position = { epoch: read.epoch, offset: message.offset }
          recovery.cursor = position
          // Its own message (published meanwhile, its live copy lost) is not sent back to it.
          if (message.origin === subscriber || own.has(message.offset)) continue
          const data = this.#host.frame({
            type: 'message',
            topic: this.#topic,
            data: message.data,
            position,
          })
          if (data !== undefined) this.#pass(recovery, data, position)
        }
        if (recovery.cursor === before && before.offset < upTo.offset) {
          // The history holds less than it said: what is missing is a gap.
          this.#gapTo(recovery, upTo, 'trimmed')
        }
      }
    } catch (err) {
      this.#host.fault(err)
      recovery.recovered = false
    }
    if (!here()) return
    this.recovering?.delete(subscriber)
    for (let index = recovery.skip; index < buffer.length; index++) {
      const item = buffer[index] as Buffered
      if (stale(item.position, recovery.cursor)) continue
      if (item.gap) recovery.recovered = false
      recovery.cursor = item.position
      if (item.data !== undefined)
        this.#pass(
          recovery,
          item.data,
          item.position,
          item.reason === 'epoch' ? 'epoch' : undefined,
        )
    }
    this.#owed(recovery)
    this.#host.joinLive(subscriber)
    recovery.settle()
  }
}
