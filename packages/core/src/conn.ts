/**
 * `Conn`: one WebSocket connection, read by pulling, with a real close-handshake state machine.
 * @module
 */
import {
  assertSendableClose,
  CloseCode,
  type CloseError,
  closeErrorOf,
  describeError,
  InternalErrorMessage,
  isNormalClose,
  NormalClosureMessage,
  truncateReason,
  utf8Length,
} from './close.js'
import {
  MESSAGE_OVERHEAD_BYTES,
  type Message,
  type MessageData,
  type SlowSubscriberPolicy,
} from './contracts.js'
import type { Hub } from './hub.js'
import {
  ADD,
  CHECK_BACKLOG,
  CLOSED,
  CLOSED_HERE,
  DELETE,
  DELIVER,
  DISPATCH_TO,
  ENDED,
  EVENTS,
  JOIN,
  LEAVE,
  PUBLISH_FROM,
  PUBLISH_NATIVE,
  READY,
  RESTORE,
  SETTLE_ENDED,
  SNAPSHOT,
  STOP_DISPATCH,
  TERMINATE,
  TREE,
} from './internal.js'
import type { ConnSnapshot, RuntimeSocket, SocketEvents } from './port.js'
import { serializedSize } from './serialized.js'
import { type Subscriber, type TopicTree, topicNameError } from './topics.js'

/**
 * Where a connection is in its life:
 * - `open`: messages flow both ways;
 * - `closing`: a close frame was sent (or a fault was seen); waiting for the peer's close frame;
 * - `closed`: the connection is over; reads and sends reject with its {@link CloseError}.
 */
export type ConnState = 'open' | 'closing' | 'closed'

/** The limits a connection enforces, from the upgrader's options. @internal */
export interface ConnLimits {
  readonly closeHandshakeTimeout: number
  readonly debug: boolean
  readonly maxMessageSize: number
  readonly maxInboundBuffer: number
  readonly sendHighWaterMark: number
  readonly maxPublishBuffer: number
  readonly slowSubscriber: SlowSubscriberPolicy
  readonly maxTopicsPerConnection: number
  readonly maxTopicLength: number
}

/**
 * The most bytes `conn.data` may take in workerd's own serialization (V8's structured clone,
 * see {@link serializedSize}): its share of a Durable Object's attachment budget.
 */
export const MAX_CONN_DATA_BYTES = 2048

/**
 * How an event controller's handlers are called. Made by the upgrader.
 * @internal
 */
export interface EventDispatch {
  message(conn: Conn, message: Message): unknown
  /** A handler threw or rejected. */
  fail(conn: Conn, error: unknown): void
  /** The connection closed and no handler is running: called once. */
  closed(conn: Conn, error: CloseError): void
}

/** Where a connection lives: its hub, and the URL it was upgraded on. @internal */
export interface ConnHome {
  readonly hub: Hub
  readonly url: string
}

interface Waiter<T> {
  resolve(value: T): void
  reject(reason: unknown): void
}

const DRAIN_POLL_MIN_MS = 1
const DRAIN_POLL_MAX_MS = 50
const resolved = Promise.resolve()
const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined })
/**
 * The empty inbox every connection starts with and returns to: one shared array, frozen so that
 * a push into it throws, replaced by a connection's own on the first message that must wait.
 */
const NO_MESSAGES: (Message | undefined)[] = Object.freeze([]) as never
const noop = () => {}
const NO_TOPICS: ReadonlySet<string> = new Set()

/** Marks a rejected promise as handled, so a send nobody awaits cannot crash the process. */
function quiet<T>(promise: Promise<T>): Promise<T> {
  promise.catch(noop)
  return promise
}

/**
 * One upgraded WebSocket connection, handed to `serve`.
 *
 * Read it with `for await (const msg of conn)` or `await conn.read()`, write with
 * `await conn.send(data)`, and end it with `await conn.close(code, reason)`. Connections are
 * made by the upgrader; do not construct one.
 */
// biome-ignore lint/suspicious/noExplicitAny: the default lets serve controllers ignore `data`
export class Conn<Data = any> implements AsyncIterable<Message>, Subscriber {
  /** The subprotocol chosen during the upgrade, or `''` when none was. */
  readonly protocol: string
  /** Whether {@link Conn.ping} works on this runtime (false on Deno and Cloudflare Workers). */
  readonly canPing: boolean
  /**
   * Published messages dropped for this connection because its peer could not keep up (with
   * `slowSubscriber: 'drop'`).
   */
  droppedMessages = 0

  readonly #socket: RuntimeSocket
  readonly #limits: ConnLimits
  readonly #home: ConnHome
  #data: Data | undefined
  #topics: Set<string> | undefined
  // Event controllers: how handlers are called, whether one is running, and whether the
  // close handler is owed once it settles.
  #dispatch: EventDispatch | undefined
  #busy = false
  #closeOwed = false
  // A handler failed: the connection is being closed, and no message reaches the controller.
  #dispatchStopped = false
  #ended: Promise<void> | undefined
  #settleEnded: (() => void) | undefined
  #endedSettled = false
  // Made on first use: most connections never ask for a signal or wait for the close.
  #abort: AbortController | undefined
  #abortReason: CloseError | undefined
  #closeHandshakeTimeout: number
  #state: ConnState = 'open'
  // This side started the close on purpose (conn.close(), a shutdown), not for a fault.
  #closedHere = false

  // Inbound: messages that arrived before `serve` asked for them, and the one pending read.
  #inbox: (Message | undefined)[] = NO_MESSAGES
  #inboxHead = 0
  #inboxBytes = 0
  #paused = false
  // The pending read; an iterator's read resolves with the iterator result itself, which saves
  // a promise and a microtask per message on the hot path. Only its resolver is kept (an idle
  // connection waits here): the end resolves it with a rejected promise.
  #readResolve: ((value: Message | IteratorResult<Message> | Promise<never>) => void) | undefined
  #readIterating = false

  // The end: the fault that ends the connection, the final error, and who waits for it.
  #fault: CloseError | undefined
  #closeError: CloseError | undefined
  #closeTimer: ReturnType<typeof setTimeout> | undefined
  #closed: Promise<void> | undefined
  #settleClosed: (() => void) | undefined

  // Outbound: sends waiting for the runtime to drain, and pings waiting for a pong; made on first
  // use, since most connections never wait.
  #drainWaiters: Waiter<void>[] | undefined
  #drainPoll: ReturnType<typeof setTimeout> | undefined
  #drainPollDelay = DRAIN_POLL_MIN_MS
  #pingWaiters: Waiter<void>[] | undefined

  /** @internal The handlers the adapter forwards the runtime's events to. */
  readonly [EVENTS]: SocketEvents

  /** @internal Made by the upgrader. */
  constructor(
    socket: RuntimeSocket,
    protocol: string | undefined,
    limits: ConnLimits,
    home: ConnHome,
  ) {
    this.#socket = socket
    this.#limits = limits
    this.#home = home
    this.#closeHandshakeTimeout = limits.closeHandshakeTimeout
    this.protocol = protocol ?? ''
    this.canPing = typeof socket.ping === 'function'
    this[EVENTS] = new Conn.#Events(this)
    home.hub.connections[ADD](this)
  }

  // One object with prototype methods per connection, rather than a closure per event: idle
  // connections are the common case. Nested here so that it can reach the private handlers.
  static readonly #Events = class implements SocketEvents {
    constructor(readonly conn: Conn) {}
    get ended(): Promise<void> {
      return this.conn.#whenEnded()
    }
    message(data: string | Uint8Array) {
      this.conn.#onMessage(data)
    }
    closed(code: number, reason: string, wasClean?: boolean) {
      this.conn.#onClosed(code, reason, wasClean)
    }
    error(error: Error, code?: number) {
      this.conn.#onError(error, code)
    }
    drain() {
      this.conn.#onDrain()
    }
    pong() {
      this.conn.#onPong()
    }
  }

  /**
   * Aborts when the connection starts closing or has closed, from either side, so `serve` can
   * cancel the work it started. Its `reason` is a {@link CloseError}.
   */
  get signal(): AbortSignal {
    if (!this.#abort) {
      this.#abort = new AbortController()
      if (this.#abortReason) this.#abort.abort(this.#abortReason)
    }
    return this.#abort.signal
  }

  /** Where the connection is in its life. */
  get state(): ConnState {
    return this.#state
  }

  /** Bytes the runtime has queued and not yet written to the network. */
  get bufferedAmount(): number {
    return this.#state === 'closed' ? 0 : this.#socket.bufferedAmount
  }

  /** The upgrade request's URL, kept for the connection's life (it survives a hibernation). */
  get url(): string {
    return this.#home.url
  }

  /**
   * The hub this connection belongs to (its server, Worker or Durable Object): its topics and
   * its registry, for event handlers, which get no Hono context (elsewhere, `getHub(c)` is the
   * same hub).
   */
  get hub(): Hub {
    return this.#home.hub
  }

  /**
   * The connection's own small state: what an event controller remembers between messages.
   * It is stored with the socket, so it survives a Durable Object's hibernation.
   *
   * Assign it rather than mutating it in place: each assignment is what gets stored, and after
   * a hibernation only the last assigned value comes back. It must be structured-cloneable
   * (plain objects, arrays, strings, numbers, booleans, `null`, `undefined`, bigints, `Map`,
   * `Set`, `Date`, `RegExp`, bytes) and take at most 2 KiB ({@link MAX_CONN_DATA_BYTES}) in
   * workerd's own serialization, which is what a Durable Object stores: a string with a
   * character past U+00FF takes two bytes per character there. Both are checked on every
   * runtime, so that a controller behaves the same everywhere.
   *
   * An assignment either takes effect and is stored, or throws and changes nothing: the value
   * is stored first, and assigned only once the store took it.
   * @throws RangeError on assignment, when the value is over 2 KiB, or holds what cannot be
   *   stored: a function, a symbol, an `Error`, a `WeakMap`, a platform object; or the
   *   runtime's error, when it refuses to store it
   */
  get data(): Data {
    return this.#data as Data
  }
  set data(value: Data) {
    let bytes: number
    try {
      bytes = serializedSize(value, 'conn.data')
    } catch (err) {
      throw new RangeError(
        `conn.data is stored with the socket, as a structured clone: ${describeError(err)}. Keep plain data in conn.data`,
      )
    }
    if (bytes > MAX_CONN_DATA_BYTES) {
      throw new RangeError(
        `conn.data is ${bytes} bytes in workerd's serialization; the limit is ${MAX_CONN_DATA_BYTES} (a Durable Object's attachment budget). Keep ids in conn.data and the rest in storage`,
      )
    }
    this.#store(value, this.#topics)
    this.#data = value
  }

  /** The topics this connection subscribes to. */
  get topics(): ReadonlySet<string> {
    return this.#topics ?? NO_TOPICS
  }

  /**
   * Subscribes to a topic: every message published on it, here or on another instance, is sent
   * to this connection, except its own. It resolves once the subscription counts everywhere
   * (the backplane confirmed it); locally it counts at once. It never rejects for a backplane
   * fault: local delivery goes on and the topic is restored when the backplane is back.
   * Subscribing twice is harmless. A closed connection subscribes to nothing.
   *
   * It either takes effect and is stored with the socket (a Durable Object's), or rejects and
   * changes nothing:
   * - with a `TypeError` for a name that is not a non-empty string of well-formed Unicode (a lone
   *   surrogate, as a `.slice()` through an emoji leaves, is refused);
   * - with a `RangeError` for a name over `maxTopicLength` UTF-8 bytes (256), or when the
   *   connection already holds `maxTopicsPerConnection` topics (128): see {@link UpgradeOptions};
   * - with the runtime's error when it refuses to store the new set of topics.
   */
  subscribe(topic: string): Promise<void> {
    const limits = this.#limits
    const refused = topicNameError(topic, limits.maxTopicLength)
    if (refused) return quiet(Promise.reject(refused))
    if (this.#state === 'closed') return resolved
    const held = this.#topics
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
    if (this.#socket.persist) {
      try {
        this.#store(this.#data, held ? [...held, topic] : [topic])
      } catch (err) {
        return quiet(Promise.reject(err))
      }
    }
    this.#topics ??= new Set()
    this.#topics.add(topic)
    if (this[TREE]) this.#socket.subscribe?.(topic)
    return this.#home.hub.topics[JOIN](topic, this)
  }

  /**
   * Leaves a topic. Leaving one it does not hold is harmless.
   * @throws the runtime's error when it refuses to store the smaller set of topics; the
   *   connection then still holds the topic
   */
  unsubscribe(topic: string): void {
    const held = this.#topics
    if (!held?.has(topic)) return
    if (this.#socket.persist)
      this.#store(
        this.#data,
        [...held].filter((t) => t !== topic),
      )
    held.delete(topic)
    if (this[TREE]) this.#socket.unsubscribe?.(topic)
    this.#home.hub.topics[LEAVE](topic, this)
  }

  /**
   * Publishes to every subscriber of `topic` but this connection, on every instance. It never
   * waits on a subscriber: a subscriber that cannot keep up is closed with 1008 or has the
   * message dropped, by the `slowSubscriber` option. The messages of one publisher on one topic
   * arrive in order, once. It works whether or not this connection subscribes to the topic.
   * @param topic - the topic
   * @param data - a string (text) or the exact bytes of a `Uint8Array` view (binary)
   * @throws TypeError for a name that is not a non-empty string of well-formed Unicode, and
   *   RangeError for one over `maxTopicLength` UTF-8 bytes, as {@link Conn.subscribe} refuses them
   */
  publish(topic: string, data: MessageData): void {
    // The name bound holds for publishes too: a client that names rooms would otherwise hand
    // the backplane (a Redis channel, its per-topic counts) a name of any length.
    const refused = topicNameError(topic, this.#limits.maxTopicLength)
    if (refused) throw refused
    this.#home.hub.topics[PUBLISH_FROM](this, topic, data)
  }

  /**
   * @internal The runtime's topic tree, for `Topics`. Not with `slowSubscriber: 'drop'`:
   * a runtime's tree cannot count the messages it drops, so the core sends them itself.
   */
  get [TREE](): TopicTree | undefined {
    return this.#limits.slowSubscriber === 'drop' ? undefined : this.#socket.tree
  }

  /** @internal Publishes through the runtime's tree, skipping this socket. */
  [PUBLISH_NATIVE](topic: string, data: MessageData): void {
    // The runtime skips the sender only on a topic the sender holds (uWS publishes nothing from
    // a socket that holds none); otherwise the sender is not in the topic, and the whole tree
    // gets it. So a publish from a `close` handler still reaches the others.
    if (this.#topics?.has(topic)) this.#socket.publish?.(topic, data)
    else this.#socket.tree?.publish(topic, data)
  }

  /** @internal Delivers a published message: never waits, never throws. */
  [DELIVER](data: MessageData): void {
    if (this.#state !== 'open') return
    try {
      if (this.#socket.bufferedAmount > this.#limits.maxPublishBuffer) {
        if (this.#limits.slowSubscriber === 'drop') this.droppedMessages++
        else this.#tooSlow()
        return
      }
      this.#socket.send(data)
    } catch (err) {
      this.#onError(err instanceof Error ? err : new Error(describeError(err)))
    }
  }

  /** @internal The runtime's tree sent to this connection: closes it when it is over its bound. */
  [CHECK_BACKLOG](): void {
    if (this.#state !== 'open') return
    try {
      if (this.#socket.bufferedAmount > this.#limits.maxPublishBuffer) this.#tooSlow()
    } catch (err) {
      this.#onError(err instanceof Error ? err : new Error(describeError(err)))
    }
  }

  #tooSlow(): void {
    this.#fail(
      CloseCode.PolicyViolation,
      `Subscriber too slow: over ${this.#limits.maxPublishBuffer} bytes of published messages unsent`,
    )
  }

  /** @internal What to store for this connection, to rebuild it after a hibernation. */
  [SNAPSHOT](): ConnSnapshot {
    return {
      protocol: this.protocol,
      url: this.#home.url,
      data: this.#data,
      topics: this.#topics ? [...this.#topics] : [],
    }
  }

  /** @internal Rebuilds the state of a connection after a hibernation, without storing it again. */
  [RESTORE](snapshot: ConnSnapshot): void {
    this.#data = snapshot.data as Data
    for (const topic of snapshot.topics) {
      this.#topics ??= new Set()
      if (this.#topics.has(topic)) continue
      this.#topics.add(topic)
      void this.#home.hub.topics[JOIN](topic, this)
    }
  }

  /** Stores what a hibernation must bring back; a throw here means nothing was stored. */
  #store(data: Data | undefined, topics: Iterable<string> | undefined): void {
    if (!this.#socket.persist || this.#state === 'closed') return
    this.#socket.persist({
      protocol: this.protocol,
      url: this.#home.url,
      data,
      topics: topics ? [...topics] : [],
    })
  }

  /**
   * Reads the next message.
   *
   * Messages that arrived before the connection closed are still returned, in order. After them,
   * once the connection has closed, it rejects with the connection's {@link CloseError}, and
   * keeps rejecting with that same error. While the connection is closing, a read waits for the
   * end. Only one read may be pending at a time; a second one rejects with an `Error`.
   */
  read(): Promise<Message> {
    return this.#pull(false) as Promise<Message>
  }

  /**
   * Iterates the messages. The loop ends quietly when the connection closes normally (1000,
   * 1001 or 1005, see {@link isCloseError}) and throws the {@link CloseError} otherwise, so that
   * `serve` fails with it.
   */
  [Symbol.asyncIterator](): AsyncIterator<Message> {
    return new Conn.#Messages(this)
  }

  // The iterator: one small object with prototype methods, not an object with two closures.
  static readonly #Messages = class implements AsyncIterator<Message> {
    constructor(readonly conn: Conn) {}
    next(): Promise<IteratorResult<Message>> {
      return this.conn.#pull(true) as Promise<IteratorResult<Message>>
    }
    return(): Promise<IteratorResult<Message>> {
      return Promise.resolve(DONE)
    }
  }

  /** A read, resolving with the message, or with the iterator result when `iterating`. */
  #pull(iterating: boolean): Promise<Message | IteratorResult<Message>> {
    if (this.#dispatch) {
      return quiet(
        Promise.reject(
          new Error(
            'An event controller gets its messages in message(): conn.read() is for serve controllers',
          ),
        ),
      )
    }
    if (this.#readResolve) {
      return quiet(
        Promise.reject(
          new Error('Only one read may be pending at a time: await the previous conn.read() first'),
        ),
      )
    }
    const message = this.#shift()
    if (message) return Promise.resolve(iterating ? { done: false, value: message } : message)
    const error = this.#closeError
    if (error)
      return iterating && this.#endsQuietly(error) ? Promise.resolve(DONE) : Promise.reject(error)
    return new Promise((resolve) => {
      this.#readResolve = resolve
      this.#readIterating = iterating
    })
  }

  /**
   * Sends one message: a string as text, a `Uint8Array` as binary (exactly the bytes of the view,
   * not its whole buffer).
   *
   * It resolves once the runtime has taken the data and holds no more than `sendHighWaterMark`
   * unsent bytes; above that it waits for the runtime to drain, so a slow peer slows the sender
   * down instead of growing memory. Messages are sent in call order even when sends are not
   * awaited. Once the connection is closing or closed it rejects with a {@link CloseError}; a
   * send nobody awaits never causes an unhandled rejection.
   */
  send(data: MessageData): Promise<void> {
    if (this.#state !== 'open') return quiet(Promise.reject(this.#endError()))
    if (typeof data !== 'string' && !(data instanceof Uint8Array)) {
      return quiet(
        Promise.reject(
          new TypeError(
            'conn.send() takes a string or a Uint8Array (use new Uint8Array(buffer) for an ArrayBuffer)',
          ),
        ),
      )
    }
    // `false`: the runtime took it with no back-pressure, so there is no buffer to read.
    if (this.#socket.send(data) === false) return resolved
    // The runtime dropped it and reported the end inside send() (Bun, past its
    // backpressureLimit): this message was not sent.
    if (this.#state !== 'open') return quiet(Promise.reject(this.#endError()))
    if (this.#socket.bufferedAmount <= this.#limits.sendHighWaterMark) return resolved
    return quiet(
      new Promise<void>((resolve, reject) => {
        this.#drainWaiters ??= []
        this.#drainWaiters.push({ resolve, reject })
        if (!this.#socket.emitsDrain) this.#scheduleDrainPoll()
      }),
    )
  }

  /**
   * Sends a ping and resolves when a pong arrives. Rejects with an `Error` where the runtime
   * cannot send pings (see {@link Conn.canPing}), and with the {@link CloseError} if the
   * connection ends first.
   */
  ping(): Promise<void> {
    if (!this.#socket.ping) {
      return quiet(
        Promise.reject(
          new Error(
            'This runtime cannot send pings: check conn.canPing before calling conn.ping()',
          ),
        ),
      )
    }
    if (this.#state !== 'open') return quiet(Promise.reject(this.#endError()))
    this.#socket.ping()
    return quiet(
      new Promise((resolve, reject) => {
        this.#pingWaiters ??= []
        this.#pingWaiters.push({ resolve, reject })
      }),
    )
  }

  /**
   * Performs the closing handshake of RFC 6455 §1.4 and resolves once the connection is closed.
   *
   * - The first call sends one close frame with `code` and `reason`, then waits for the peer's
   *   close frame, for at most the close-handshake timeout (see
   *   {@link Conn.setCloseHandshakeTimeout}). When it passes, the connection is torn down
   *   (terminated where the runtime can) and ends with code 1006.
   * - Later and concurrent calls send nothing and resolve with the same handshake.
   * - Messages that arrive while closing are discarded; a pending read waits for the end.
   * - It never rejects, except with a `RangeError`, before anything is sent, when `code` may not
   *   be sent (1005, 1006, 1015, or outside 1000-1014 and 3000-4999) or `reason` is over 123
   *   UTF-8 bytes.
   *
   * @param code - the close code, 1000 (normal closure) by default
   * @param reason - the close reason, at most 123 UTF-8 bytes
   */
  close(code: number = CloseCode.NormalClosure, reason = ''): Promise<void> {
    try {
      assertSendableClose(code, reason)
    } catch (err) {
      return Promise.reject(err)
    }
    return this.#close(code, reason)
  }

  /** {@link Conn.close} with a code and reason known to be sendable. */
  #close(code: number, reason: string): Promise<void> {
    if (this.#state !== 'open') return this.#whenClosed()
    // A close for a fault (#fail) has set the fault first: that one is not this side's choice.
    if (this.#fault === undefined) this.#closedHere = true
    this.#startClosing(code, reason)
    try {
      this.#socket.close(code, reason)
    } catch {
      this.#tearDown('The runtime refused to send the close frame')
      return this.#whenClosed()
    }
    // A runtime may end the connection inside close() (Bun does): then there is nothing to wait for.
    if ((this.#state as ConnState) === 'closing') this.#armCloseTimer()
    return this.#whenClosed()
  }

  /**
   * @internal Ends the connection now, without waiting for the peer (terminated where the
   * runtime can): the end of a shutdown's deadline.
   */
  [TERMINATE](reason: string): void {
    this.#tearDown(reason)
  }

  /** Closes with 1000 and {@link NormalClosureMessage} (`'Server closed connection'`). See {@link Conn.close}. */
  closeNormal(): Promise<void> {
    return this.#close(CloseCode.NormalClosure, NormalClosureMessage)
  }

  /**
   * Closes with 1011 and `'Internal server error'`, or with the error's message (cut to 123
   * bytes) when `debug` is on. See {@link Conn.close}. It does not report the error: the
   * upgrader does that when `serve` throws.
   */
  closeWithError(err: unknown): Promise<void> {
    const reason = this.#limits.debug ? truncateReason(describeError(err)) : InternalErrorMessage
    return this.close(CloseCode.InternalError, reason)
  }

  /** The time `close()` waits for the peer's close frame, in milliseconds. */
  getCloseHandshakeTimeout(): number {
    return this.#closeHandshakeTimeout
  }

  /**
   * Sets the time `close()` waits for the peer's close frame, in milliseconds; 0 or less means
   * no wait. It applies to handshakes started after the call.
   */
  setCloseHandshakeTimeout(ms: number): void {
    this.#closeHandshakeTimeout = ms
  }

  /** @internal Resolves once the connection is closed, whoever closed it. */
  get [CLOSED](): Promise<void> {
    return this.#whenClosed()
  }

  // --- inbound ---

  #onMessage(data: string | Uint8Array): void {
    // Data after a close frame, after a fault, or after an event handler failed, is discarded.
    if (this.#state !== 'open' || this.#dispatchStopped) return
    const { maxMessageSize, maxInboundBuffer } = this.#limits
    const size = typeof data === 'string' ? data.length : data.byteLength
    if (
      size > maxMessageSize / 3 &&
      (typeof data === 'string' ? utf8Length(data) : size) > maxMessageSize
    ) {
      this.#fail(
        CloseCode.MessageTooBig,
        `Message is over maxMessageSize (${maxMessageSize} bytes)`,
      )
      return
    }
    const message: Message =
      typeof data === 'string' ? { type: 'text', data } : { type: 'binary', data }
    const resolve = this.#readResolve
    if (resolve) {
      this.#readResolve = undefined
      resolve(this.#readIterating ? { done: false, value: message } : message)
      return
    }
    if (this.#dispatch && !this.#busy && this.#inboxHead === this.#inbox.length) {
      this.#run(message)
      // The handler may have closed the connection, or the runtime handed over more, while it
      // ran: what it deferred runs now, after it.
      if (!this.#busy && (this.#closeOwed || this.#inbox !== NO_MESSAGES)) this.#drainEvents()
      return
    }
    if (this.#inbox === NO_MESSAGES) this.#inbox = [message]
    else this.#inbox.push(message)
    this.#inboxBytes += size + MESSAGE_OVERHEAD_BYTES
    if (this.#inboxBytes <= maxInboundBuffer) return
    // Pause where the runtime can; it may still hand over what it already parsed, so a second
    // bound catches a runtime that does not stop.
    if (this.#socket.pause && this.#inboxBytes <= 2 * maxInboundBuffer) {
      if (!this.#paused) {
        this.#paused = true
        this.#socket.pause()
      }
      return
    }
    this.#fail(
      CloseCode.PolicyViolation,
      `Inbound buffer over ${maxInboundBuffer} bytes: serve reads slower than the peer sends`,
    )
  }

  #shift(): Message | undefined {
    if (this.#inboxHead === this.#inbox.length) return undefined
    const message = this.#inbox[this.#inboxHead] as Message
    this.#inbox[this.#inboxHead++] = undefined
    if (this.#inboxHead === this.#inbox.length) {
      this.#inbox = NO_MESSAGES
      this.#inboxHead = 0
    }
    const size = typeof message.data === 'string' ? message.data.length : message.data.byteLength
    this.#inboxBytes -= size + MESSAGE_OVERHEAD_BYTES
    if (this.#paused && this.#inboxBytes <= this.#limits.maxInboundBuffer / 2) {
      this.#paused = false
      if (this.#state === 'open') this.#socket.resume?.()
    }
    return message
  }

  // --- the close handshake ---

  #startClosing(code: number, reason: string): void {
    this.#state = 'closing'
    const closing = closeErrorOf(code, reason, false)
    this.#abortWith(closing)
    // Sends waiting for a drain will never be written in full: fail them now.
    this.#rejectWaiters(closing)
    // The peer's close frame sits behind the data we stopped reading: read on (and discard),
    // or the handshake can only end at the timeout.
    if (this.#paused) {
      this.#paused = false
      try {
        this.#socket.resume?.()
      } catch {
        // The socket is gone: its end is reported separately.
      }
    }
  }

  #armCloseTimer(): void {
    // The runtime finishes the handshake itself and reports its end (the Hibernation API).
    if (this.#socket.closesHandshake) return
    const timeout = this.#closeHandshakeTimeout
    if (timeout <= 0) {
      this.#tearDown('No close handshake wait (timeout is 0)')
      return
    }
    this.#closeTimer = setTimeout(
      () => this.#tearDown(`The peer did not answer the close frame within ${timeout} ms`),
      timeout,
    )
  }

  /** Ends the connection without waiting any longer for the peer. */
  #tearDown(reason: string): void {
    if (this.#state === 'closed') return
    // A runtime may report the end inside terminate() (the test kit does): it ends with this
    // reason all the same, as where the end comes later.
    this.#fault ??= closeErrorOf(CloseCode.AbnormalClosure, reason, false)
    try {
      this.#socket.terminate?.()
    } catch {
      // The socket is already gone: nothing left to tear down.
    }
    // terminate() may have reported the end already, synchronously.
    if ((this.#state as ConnState) === 'closed') return
    this.#finish(closeErrorOf(CloseCode.AbnormalClosure, reason, false))
  }

  /** Closes the connection because of a fault seen here (1008, 1009). */
  #fail(code: number, reason: string): void {
    this.#fault ??= closeErrorOf(code, reason, false)
    void this.close(code, reason)
  }

  #onError(error: Error, code?: number): void {
    if (this.#state === 'closed') return
    this.#fault ??= closeErrorOf(code ?? CloseCode.AbnormalClosure, error.message, false)
    if (this.#state === 'open') {
      // The runtime closes on its own after a fault; the timer covers a runtime that does not.
      this.#startClosing(this.#fault.code, this.#fault.reason)
      this.#armCloseTimer()
    }
  }

  #onClosed(code: number, reason: string, wasClean?: boolean): void {
    if (this.#state === 'closed') return
    const fault = this.#fault
    this.#finish(
      fault
        ? closeErrorOf(fault.code, fault.reason, false)
        : closeErrorOf(code, reason, wasClean ?? code !== CloseCode.AbnormalClosure),
    )
  }

  #finish(error: CloseError): void {
    if (this.#state === 'closed') return
    this.#state = 'closed'
    this.#closeError = error
    // Most connections never armed one; on some runtimes clearing is a call into native code.
    if (this.#closeTimer !== undefined) clearTimeout(this.#closeTimer)
    this.#abortWith(error)
    const resolve = this.#readResolve
    this.#readResolve = undefined
    if (resolve)
      resolve(this.#readIterating && this.#endsQuietly(error) ? DONE : quiet(Promise.reject(error)))
    this.#rejectWaiters(error)
    this.#home.hub.connections[DELETE](this)
    if (this.#endedSettled) this.#home.hub.connections[ENDED](this)
    if (this.#topics) {
      // Forgotten here, so that an unsubscribe() after the end (a cleanup) cannot leave twice.
      const held = this.#topics
      this.#topics = undefined
      for (const topic of held) this.#home.hub.topics[LEAVE](topic, this)
    }
    this.#settleClosed?.()
    if (this.#dispatch) {
      this.#closeOwed = true
      if (!this.#busy) this.#drainEvents()
    }
  }

  /**
   * Whether an iteration ends quietly at this end: a normal close (1000, 1001, 1005), or one
   * this side started itself with `close()` (a shutdown's 1012, the app's own 4000), which is
   * not the controller's failure.
   */
  #endsQuietly(error: CloseError): boolean {
    return this.#closedHere || isNormalClose(error)
  }

  /**
   * @internal True when this side started the close on purpose (`close()`, a shutdown), not
   * for a fault: the end is then no failure of the controller's.
   */
  get [CLOSED_HERE](): boolean {
    return this.#closedHere
  }

  /** Aborts the signal once, with the first reason: the close that started the end. */
  #abortWith(reason: CloseError): void {
    if (this.#abortReason) return
    this.#abortReason = reason
    this.#abort?.abort(reason)
  }

  #whenClosed(): Promise<void> {
    this.#closed ??=
      this.#state === 'closed'
        ? resolved
        : new Promise((resolve) => {
            this.#settleClosed = resolve
          })
    return this.#closed
  }

  #endError(): CloseError {
    return this.#closeError ?? (this.#abortReason as CloseError)
  }

  // --- event controllers ---

  /**
   * @internal Turns this connection into an event controller's: messages go to `dispatch`
   * instead of `read()`. It starts busy, until `open` settles.
   */
  [DISPATCH_TO](dispatch: EventDispatch): void {
    this.#dispatch = dispatch
    this.#busy = true
    // The connection may have ended before the controller started (the runtime opened the
    // socket before the HTTP handler returned): `close` is still owed, once `open` settles.
    if (this.#state === 'closed') this.#closeOwed = true
  }

  /** @internal The `open` handler settled: hand over what arrived meanwhile. */
  [READY](): void {
    this.#busy = false
    this.#drainEvents()
  }

  /**
   * @internal A handler failed: no more messages go to the controller, neither the queued ones
   * nor those that arrive while the failure is reported and the connection closes.
   */
  [STOP_DISPATCH](): void {
    this.#dispatchStopped = true
    this.#inbox = NO_MESSAGES
    this.#inboxHead = 0
    this.#inboxBytes = 0
  }

  /**
   * Runs the message handler; a promise makes the next message wait for it. The connection is
   * busy from the call on, not only once a promise comes back: an end reported while the
   * handler's synchronous part runs (a runtime that ends the connection inside `close()`, as
   * Bun does; a close with no handshake wait) must not run `close` inside `message`.
   */
  #run(message: Message): void {
    const dispatch = this.#dispatch as EventDispatch
    let result: unknown
    this.#busy = true
    try {
      result = dispatch.message(this, message)
    } catch (err) {
      this.#busy = false
      dispatch.fail(this, err)
      return
    }
    // `return conn.send(data)` with no back-pressure returns the already-settled `resolved`:
    // nothing to wait for, so the next message runs without a promise and a turn per message.
    if (result === undefined || result === resolved) {
      this.#busy = false
      return
    }
    if (typeof (result as PromiseLike<unknown>)?.then === 'function') {
      ;(result as PromiseLike<unknown>).then(
        () => this.#afterHandler(),
        (err: unknown) => {
          dispatch.fail(this, err)
          this.#afterHandler()
        },
      )
    } else {
      this.#busy = false
    }
  }

  #afterHandler(): void {
    this.#busy = false
    this.#drainEvents()
  }

  /** Hands queued messages to the controller, one at a time, then the close when it is owed. */
  #drainEvents(): void {
    while (!this.#busy) {
      const message = this.#shift()
      if (message) {
        this.#run(message)
        continue
      }
      if (this.#closeOwed) {
        this.#closeOwed = false
        const dispatch = this.#dispatch as EventDispatch
        dispatch.closed(this, this.#closeError as CloseError)
      }
      return
    }
  }

  /** @internal `serve`, or the close handler, settled: `events.ended` may resolve. */
  [SETTLE_ENDED](): void {
    if (this.#endedSettled) return
    this.#endedSettled = true
    this.#settleEnded?.()
    this.#home.hub.connections[ENDED](this)
  }

  #whenEnded(): Promise<void> {
    if (this.#endedSettled) return resolved
    this.#ended ??= new Promise((resolve) => {
      this.#settleEnded = resolve
    })
    return this.#ended
  }

  // --- outbound ---

  #onDrain(): void {
    if (this.#socket.bufferedAmount > this.#limits.sendHighWaterMark) return
    const waiters = this.#drainWaiters
    this.#drainWaiters = undefined
    for (const waiter of waiters ?? []) waiter.resolve()
  }

  #scheduleDrainPoll(): void {
    if (this.#drainPoll !== undefined) return
    this.#drainPoll = setTimeout(() => {
      this.#drainPoll = undefined
      this.#onDrain()
      if (this.#drainWaiters === undefined) {
        this.#drainPollDelay = DRAIN_POLL_MIN_MS
        return
      }
      this.#drainPollDelay = Math.min(this.#drainPollDelay * 2, DRAIN_POLL_MAX_MS)
      this.#scheduleDrainPoll()
    }, this.#drainPollDelay)
  }

  #onPong(): void {
    const waiters = this.#pingWaiters
    this.#pingWaiters = undefined
    for (const waiter of waiters ?? []) waiter.resolve()
  }

  #rejectWaiters(error: CloseError): void {
    if (!this.#drainWaiters && !this.#pingWaiters) return
    if (this.#drainPoll !== undefined) clearTimeout(this.#drainPoll)
    this.#drainPoll = undefined
    const waiters = [...(this.#drainWaiters ?? []), ...(this.#pingWaiters ?? [])]
    this.#drainWaiters = this.#pingWaiters = undefined
    for (const waiter of waiters) waiter.reject(error)
  }
}
