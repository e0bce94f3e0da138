/**
 * `Conn`: one WebSocket connection, read by pulling, with a real close-handshake state machine.
 *
 * The class holds the connection's fields and its public contract; each concern lives in its
 * own file, as module functions that take the connection (no object per connection):
 * - `close-handshake.ts`: the close state machine, and every way a connection ends;
 * - `inbound.ts`: the inbox, `read()`, the iterator, and the pause/resume bound;
 * - `outbound.ts`: `send()` and its drain, published messages' slow-subscriber bound, `ping()`;
 * - `dispatch.ts`: how an event controller's handlers are called, one at a time;
 * - `membership.ts`: topics held, and the runtime's own topic tree;
 * - `storage.ts`: `conn.data` and what a hibernation stores.
 * @module
 */
import {
  assertSendableClose,
  CloseCode,
  type CloseEnd,
  type CloseError,
  describeError,
  InternalErrorMessage,
  NormalClosureMessage,
  truncateReason,
} from './close.js'
import { closeConn, onClosed, onError, tearDown, whenClosed } from './close-handshake.js'
import {
  ABORT,
  ABORT_REASON,
  BUSY,
  CLOSE_ERROR,
  CLOSE_OWED,
  CLOSE_TIMEOUT,
  CLOSE_TIMER,
  DATA,
  DISPATCH,
  DISPATCH_STOPPED,
  DRAIN_POLL,
  DRAIN_POLL_DELAY,
  DRAIN_WAITERS,
  ENDED_SETTLED,
  FAULT,
  HOME,
  INBOX,
  INBOX_BYTES,
  INBOX_HEAD,
  LIMITS,
  PAUSED,
  PING_WAITERS,
  PRESENCE,
  READ_ITERATING,
  READ_RESOLVE,
  RESOLVE_ENDED,
  SETTLE_CLOSED,
  SOCKET,
  STATE,
  TOPICS,
  WHEN_CLOSED,
  WHEN_ENDED,
} from './conn-fields.js'
import type { Message, MessageData, SlowSubscriberPolicy } from './contracts.js'
import {
  dispatchTo,
  type EventDispatch,
  ready,
  settleEnded,
  stopDispatch,
  whenEnded,
} from './dispatch.js'
import type { SubscribeOptions, Subscription } from './history.js'
import type { Hub } from './hub.js'
import { Messages, NO_MESSAGES, onMessage, pull, type ReadResolve } from './inbound.js'
import {
  ADD,
  CHECK_BACKLOG,
  CLOSED,
  CLOSED_HERE,
  DELIVER,
  DISPATCH_TO,
  ENTER_TREE,
  EVENTS,
  PUBLISH_NATIVE,
  READY,
  RESTORE,
  SETTLE_ENDED,
  SNAPSHOT,
  STOP_DISPATCH,
  TERMINATE,
  TREE,
} from './internal.js'
import {
  enterTree,
  NO_TOPICS,
  publish,
  publishNative,
  subscribe,
  treeOf,
  unsubscribe,
} from './membership.js'
import {
  checkBacklog,
  DRAIN_POLL_MIN_MS,
  deliver,
  onDrain,
  onPong,
  ping,
  send,
  type Waiter,
} from './outbound.js'
import type { ConnSnapshot, RuntimeSocket, SocketEvents } from './port.js'
import { assignData, restore, snapshotOf } from './storage.js'
import type { Subscriber, TopicTree } from './topics.js'

export { MAX_CONN_DATA_BYTES } from './storage.js'

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

/** Where a connection lives: its hub, and the URL it was upgraded on. @internal */
export interface ConnHome {
  readonly hub: Hub
  readonly url: string
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

  // The fields, keyed by module-private symbols so that each part reads them (conn-fields.ts).
  /** @internal */ readonly [SOCKET]: RuntimeSocket
  /** @internal */ readonly [LIMITS]: ConnLimits
  /** @internal */ readonly [HOME]: ConnHome;
  /** @internal */ [DATA]: Data | undefined;
  /** @internal */ [TOPICS]: Set<string> | undefined;
  /** @internal */ [PRESENCE]: string | undefined;
  // Event controllers (dispatch.ts).
  /** @internal */ [DISPATCH]: EventDispatch | undefined;
  /** @internal */ [BUSY] = false;
  /** @internal */ [CLOSE_OWED] = false;
  /** @internal */ [DISPATCH_STOPPED] = false;
  /** @internal */ [WHEN_ENDED]: Promise<void> | undefined;
  /** @internal */ [RESOLVE_ENDED]: (() => void) | undefined;
  /** @internal */ [ENDED_SETTLED] = false;
  // Made on first use: most connections never ask for a signal or wait for the close. The
  // fields of the end are declared only (`declare`): no slot is made for them until the
  // connection closes. The ones an open connection may set (the signal's controller, the drain
  // and ping waiters, the drain poll) have their slot from the start, so that every open
  // connection keeps one hidden class whatever it used: one per order of use made the property
  // reads of the per-message path polymorphic, past four megamorphic.
  /** @internal */ [ABORT]: AbortController | undefined
  /** @internal */ declare [ABORT_REASON]: CloseEnd | undefined;
  /** @internal */ [CLOSE_TIMEOUT]: number;
  /** @internal */ [STATE]: ConnState = 'open';
  /**
   * @internal True when this side started the close on purpose (`close()`, a shutdown), not
   * for a fault: the end is then no failure of the controller's.
   */
  [CLOSED_HERE] = false;
  // Inbound (inbound.ts): messages not yet asked for, and the one pending read. Only the
  // read's resolver is kept (an idle connection waits here).
  /** @internal */ [INBOX]: (Message | undefined)[] = NO_MESSAGES;
  /** @internal */ [INBOX_HEAD] = 0;
  /** @internal */ [INBOX_BYTES] = 0;
  /** @internal */ [PAUSED] = false;
  /** @internal */ [READ_RESOLVE]: ReadResolve | undefined;
  /** @internal */ [READ_ITERATING] = false
  // The end (close-handshake.ts): the fault that ends the connection, the final error, and
  // who waits for it.
  /** @internal */ declare [FAULT]: CloseEnd | undefined
  /** @internal */ declare [CLOSE_ERROR]: CloseEnd | undefined
  /** @internal */ declare [CLOSE_TIMER]: ReturnType<typeof setTimeout> | undefined
  /** @internal */ declare [WHEN_CLOSED]: Promise<void> | undefined
  /** @internal */ declare [SETTLE_CLOSED]: (() => void) | undefined;
  // Outbound (outbound.ts): sends waiting for the runtime to drain, and pings waiting for a
  // pong; made on first use, since most connections never wait.
  /** @internal */ [DRAIN_WAITERS]: Waiter<void>[] | undefined;
  /** @internal */ [DRAIN_POLL]: ReturnType<typeof setTimeout> | undefined;
  /** @internal */ [DRAIN_POLL_DELAY] = DRAIN_POLL_MIN_MS;
  /** @internal */ [PING_WAITERS]: Waiter<void>[] | undefined

  /** @internal The handlers the adapter forwards the runtime's events to. */
  readonly [EVENTS]: SocketEvents

  /** @internal Made by the upgrader. */
  constructor(
    socket: RuntimeSocket,
    protocol: string | undefined,
    limits: ConnLimits,
    home: ConnHome,
  ) {
    this[SOCKET] = socket
    this[LIMITS] = limits
    this[HOME] = home
    this[CLOSE_TIMEOUT] = limits.closeHandshakeTimeout
    this.protocol = protocol ?? ''
    this.canPing = typeof socket.ping === 'function'
    this[EVENTS] = new ConnEvents(this)
    home.hub.connections[ADD](this)
  }

  /**
   * Aborts when the connection starts closing or has closed, from either side, so `serve` can
   * cancel the work it started. Its `reason` is a {@link CloseError}.
   */
  get signal(): AbortSignal {
    if (!this[ABORT]) {
      this[ABORT] = new AbortController()
      if (this[ABORT_REASON]) this[ABORT].abort(this[ABORT_REASON].error)
    }
    return this[ABORT].signal
  }

  /** Where the connection is in its life. */
  get state(): ConnState {
    return this[STATE]
  }

  /** Bytes the runtime has queued and not yet written to the network. */
  get bufferedAmount(): number {
    return this[STATE] === 'closed' ? 0 : this[SOCKET].bufferedAmount
  }

  /** The upgrade request's URL, kept for the connection's life (it survives a hibernation). */
  get url(): string {
    return this[HOME].url
  }

  /**
   * The hub this connection belongs to (its server, Worker or Durable Object): its topics and
   * its registry, for event handlers, which get no Hono context (elsewhere, `getHub(c)` is the
   * same hub).
   */
  get hub(): Hub {
    return this[HOME].hub
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
    return this[DATA] as Data
  }
  set data(value: Data) {
    assignData(this, value)
  }

  /** The topics this connection subscribes to. */
  get topics(): ReadonlySet<string> {
    return this[TOPICS] ?? NO_TOPICS
  }

  /**
   * Subscribes to a topic: every message published on it, here or on another instance, is sent
   * to this connection, except its own. It resolves once the subscription counts everywhere
   * (the backplane confirmed it); locally it counts at once. It never rejects for a backplane
   * fault: local delivery goes on and the topic is restored when the backplane is back.
   * Subscribing twice is harmless: the second call (its `since` is not used) resolves with where
   * the connection is, once a recovery on its way is done. A closed connection subscribes to
   * nothing.
   *
   * On a topic that keeps history (`topics.useHistory()`), `{ since }` first sends every message
   * after that position, in order, each once, then the ones published meanwhile, then it goes
   * live; it resolves once the missed messages were sent. The {@link Subscription} says where
   * the subscriber is (`position`) and whether nothing was missed (`recovered`): false when the
   * history no longer reaches back to `since`, its epoch changed, or it could not be read. The
   * subscriber is then sent the framed gap notice first, and what the history still holds.
   * `since` on a topic without history resolves with `recovered: false`.
   *
   * With `{ presence: meta }` the connection also joins the topic's presence: it is listed by
   * `topics.presence(topic)` on every instance, with `meta`, until it unsubscribes or closes
   * (however it closes). Its member id is the same for all its topics and kept for its life,
   * across a Durable Object's hibernation too. Subscribing again with other metadata replaces
   * it (one `'presence'` event, with the old member in `leaves` and the new in `joins`); with
   * equal metadata (equal JSON text), or with none, it changes nothing.
   *
   * It either takes effect and is stored with the socket (a Durable Object's), or rejects and
   * changes nothing:
   * - with a `TypeError` for a name that is not a non-empty string of well-formed Unicode (a lone
   *   surrogate, as a `.slice()` through an emoji leaves, is refused), for a `since` that is
   *   not a position, or for presence metadata that is not JSON (`undefined`, a function, a
   *   bigint, a `Date`, a `Map`, `NaN`, a cycle);
   * - with a `RangeError` for a name over `maxTopicLength` UTF-8 bytes (256), or when the
   *   connection already holds `maxTopicsPerConnection` topics (128): see {@link UpgradeOptions};
   *   with the one `useHistory()`'s `history` answer was wrong for; and for presence metadata
   *   over `MAX_PRESENCE_META_BYTES` (1024) bytes of UTF-8 JSON;
   * - with the runtime's error when it refuses to store the new set of topics.
   * @param topic - the topic
   * @param options - `since`: the position to recover from; `presence`: the metadata to be
   *   listed with
   */
  subscribe(topic: string, options?: SubscribeOptions): Promise<Subscription> {
    return subscribe(this, topic, options)
  }

  /**
   * Leaves a topic. Leaving one it does not hold is harmless.
   * @throws the runtime's error when it refuses to store the smaller set of topics; the
   *   connection then still holds the topic
   */
  unsubscribe(topic: string): void {
    unsubscribe(this, topic)
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
    publish(this, topic, data)
  }

  /** @internal The runtime's topic tree, for `Topics` (none with `slowSubscriber: 'drop'`). */
  get [TREE](): TopicTree | undefined {
    return treeOf(this)
  }

  /** @internal Publishes through the runtime's tree, skipping this socket. */
  [PUBLISH_NATIVE](topic: string, data: MessageData): void {
    publishNative(this, topic, data)
  }

  /** @internal Joins the runtime's tree for a topic, once the core lets it go live there. */
  [ENTER_TREE](topic: string): void {
    enterTree(this, topic)
  }

  /** @internal Delivers a published message: never waits, never throws; false when not sent. */
  [DELIVER](data: MessageData, notice?: () => MessageData | undefined, always?: boolean): boolean {
    return deliver(this, data, notice, always)
  }

  /** @internal The runtime's tree sent to this connection: closes it when it is over its bound. */
  [CHECK_BACKLOG](): void {
    checkBacklog(this)
  }

  /** @internal What to store for this connection, to rebuild it after a hibernation. */
  [SNAPSHOT](): ConnSnapshot {
    return snapshotOf(this)
  }

  /** @internal Rebuilds the state of a connection after a hibernation, without storing it again. */
  [RESTORE](snapshot: ConnSnapshot): void {
    restore(this, snapshot)
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
    return pull(this, false) as Promise<Message>
  }

  /**
   * Iterates the messages. The loop ends quietly when the connection closes normally (1000,
   * 1001 or 1005, see {@link isCloseError}) and throws the {@link CloseError} otherwise, so that
   * `serve` fails with it.
   */
  [Symbol.asyncIterator](): AsyncIterator<Message> {
    return new Messages(this)
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
    return send(this, data)
  }

  /**
   * Sends a ping and resolves when a pong arrives. Rejects with an `Error` where the runtime
   * cannot send pings (see {@link Conn.canPing}), and with the {@link CloseError} if the
   * connection ends first.
   */
  ping(): Promise<void> {
    return ping(this)
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
    return closeConn(this, code, reason)
  }

  /**
   * @internal Ends the connection now, without waiting for the peer (terminated where the
   * runtime can): the end of a shutdown's deadline.
   */
  [TERMINATE](reason: string): void {
    tearDown(this, reason)
  }

  /** Closes with 1000 and {@link NormalClosureMessage} (`'Server closed connection'`). See {@link Conn.close}. */
  closeNormal(): Promise<void> {
    return closeConn(this, CloseCode.NormalClosure, NormalClosureMessage)
  }

  /**
   * Closes with 1011 and `'Internal server error'`, or with the error's message (cut to 123
   * bytes) when `debug` is on. See {@link Conn.close}. It does not report the error: the
   * upgrader does that when `serve` throws.
   */
  closeWithError(err: unknown): Promise<void> {
    const reason = this[LIMITS].debug ? truncateReason(describeError(err)) : InternalErrorMessage
    return this.close(CloseCode.InternalError, reason)
  }

  /** The time `close()` waits for the peer's close frame, in milliseconds. */
  getCloseHandshakeTimeout(): number {
    return this[CLOSE_TIMEOUT]
  }

  /**
   * Sets the time `close()` waits for the peer's close frame, in milliseconds; 0 or less means
   * no wait. It applies to handshakes started after the call.
   */
  setCloseHandshakeTimeout(ms: number): void {
    this[CLOSE_TIMEOUT] = ms
  }

  /** @internal Resolves once the connection is closed, whoever closed it. */
  get [CLOSED](): Promise<void> {
    return whenClosed(this)
  }

  /**
   * @internal Turns this connection into an event controller's: messages go to `dispatch`
   * instead of `read()`. It starts busy, until `open` settles.
   */
  [DISPATCH_TO](dispatch: EventDispatch): void {
    dispatchTo(this, dispatch)
  }

  /** @internal The `open` handler settled: hand over what arrived meanwhile. */
  [READY](): void {
    ready(this)
  }

  /** @internal A handler failed: no more messages go to the controller. */
  [STOP_DISPATCH](): void {
    stopDispatch(this)
  }

  /** @internal `serve`, or the close handler, settled: `events.ended` may resolve. */
  [SETTLE_ENDED](): void {
    settleEnded(this)
  }
}

/** An `inspect` as Node, Bun and Deno hand it to a custom inspection. */
type Inspect = (value: unknown, options: { depth?: number | null }) => string

// What `console.log(conn)` and `util.inspect(conn)` show: the connection's public state, not
// its symbol-keyed internals (the socket, the hub, the timers). Node, Bun and Deno all look this
// registered symbol up; it costs the prototype one property, and a connection nothing.
Object.defineProperty(Conn.prototype, Symbol.for('nodejs.util.inspect.custom'), {
  value(this: Conn, depth: number, options: { depth?: number | null }, inspect?: Inspect) {
    if (depth < 0) return '[Conn]'
    const state = {
      state: this.state,
      protocol: this.protocol,
      url: this.url,
      topics: this.topics,
      data: this.data,
      bufferedAmount: this.bufferedAmount,
      droppedMessages: this.droppedMessages,
    }
    if (!inspect) return state
    const inner = options.depth == null ? options.depth : options.depth - 1
    return `Conn ${inspect(state, { ...options, depth: inner })}`
  },
})

/**
 * What the adapter forwards a connection's runtime events to: one object with prototype methods
 * per connection, rather than a closure per event, as idle connections are the common case.
 */
class ConnEvents implements SocketEvents {
  constructor(readonly conn: Conn) {}
  get ended(): Promise<void> {
    return whenEnded(this.conn)
  }
  message(data: string | Uint8Array) {
    onMessage(this.conn, data)
  }
  closed(code: number, reason: string, wasClean?: boolean) {
    onClosed(this.conn, code, reason, wasClean)
  }
  error(error: Error, code?: number) {
    onError(this.conn, error, code)
  }
  drain() {
    onDrain(this.conn)
  }
  pong() {
    onPong(this.conn)
  }
}
