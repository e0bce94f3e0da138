/**
 * `@handshake/client`: a WebSocket client for Handshake's channel protocol (`handshake.v1`). It
 * reconnects with backoff and full jitter, detects dead connections with heartbeats, queues
 * sends while disconnected (bounded), resumes subscriptions from their last positions, and
 * answers `request()` with ids, timeouts and typed errors. Types come from the server's
 * definition: `createClient<typeof chat>(url)`.
 *
 * ```ts
 * import { createClient } from '@handshake/client'
 * import type { chat } from './server.js'
 *
 * const client = createClient<typeof chat>('wss://example.com/ws')
 * client.subscribe('rooms/lobby', { message: (data) => console.log(data.text) })
 * const sum = await client.request('add', { a: 1, b: 2 })
 * ```
 * @module
 */

// --- protocol ---

/** The subprotocol the client offers: the protocol's name and version. */
export const PROTOCOL = 'handshake.v1'
const PING = '{"type":"ping"}'
const PONG = '{"type":"pong"}'

/** Close codes after which the client never reconnects: the same frames would fail again. */
export const NO_RETRY_CODES: readonly number[] = [1002, 1003, 1007, 1008, 1009, 1010]

/** Where a message sits in its topic's history: compare the epoch before the offset. */
export interface Position {
  readonly epoch: string
  readonly offset: number
}

/** One of a schema's issues, as the server sends it. */
export interface Issue {
  readonly message: string
  readonly path?: ReadonlyArray<string | number>
}

/**
 * What went wrong, for code to tell apart. The server's: `invalid` (the schema refused the
 * input; see `issues`), `forbidden`, `not_found`, `internal`, or an app's own. The client's:
 * `timeout`, `disconnected` (the connection dropped after the frame was sent: it may or may not
 * have been handled, and it is never sent again), `closed` (the client is closed), `queue_full`.
 */
export type ErrorCode =
  | 'invalid'
  | 'forbidden'
  | 'not_found'
  | 'internal'
  | 'timeout'
  | 'disconnected'
  | 'closed'
  | 'queue_full'
  | (string & {})

/** The error a request, an acknowledged publish or a subscription fails with. */
export class ChannelError extends Error {
  override readonly name = 'ChannelError'
  /**
   * @param code - what went wrong: see {@link ErrorCode}
   * @param message - for people
   * @param issues - the schema's issues, for `invalid`
   * @param details - what the server's handler added
   */
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly issues?: readonly Issue[],
    readonly details?: unknown,
  ) {
    super(message)
  }
}

// --- types from the server's definition ---

interface AnyChannels {
  readonly topics: {
    readonly [pattern: string]: {
      // biome-ignore lint/suspicious/noExplicitAny: an untyped client takes anything
      readonly message: any
      // biome-ignore lint/suspicious/noExplicitAny: an untyped client takes anything
      readonly input?: any
      // biome-ignore lint/suspicious/noExplicitAny: an untyped client takes anything
      readonly presence?: any
    }
  }
  // biome-ignore lint/suspicious/noExplicitAny: an untyped client takes anything
  readonly requests: { readonly [name: string]: { readonly input: any; readonly output: any } }
}

/** The topics and requests of a channel definition (`typeof chat`), or any for none. */
export type ChannelsOf<C> = unknown extends C
  ? AnyChannels
  : C extends { readonly '~channels'?: infer T }
    ? NonNullable<T> extends AnyChannels
      ? NonNullable<T>
      : AnyChannels
    : AnyChannels

/** `'rooms/:room'` as a template type: `` `rooms/${string}` ``. */
export type PatternTemplate<P extends string> = P extends `${infer Head}:${string}/${infer Rest}`
  ? `${Head}${string}/${PatternTemplate<Rest>}`
  : P extends `${infer Head}:${string}`
    ? `${Head}${string}`
    : P

/** The topic names a definition allows. */
export type TopicName<C> = {
  [P in keyof ChannelsOf<C>['topics'] & string]: PatternTemplate<P>
}[keyof ChannelsOf<C>['topics'] & string]

/** The message type of a topic. */
export type MessageOf<C, Topic extends string> = {
  [P in keyof ChannelsOf<C>['topics'] & string]: Topic extends PatternTemplate<P>
    ? ChannelsOf<C>['topics'][P]['message']
    : never
}[keyof ChannelsOf<C>['topics'] & string]

/** What a client publishes on a topic: what the topic's schema accepts (its input). */
export type PublishOf<C, Topic extends string> = {
  [P in keyof ChannelsOf<C>['topics'] & string]: Topic extends PatternTemplate<P>
    ? ChannelsOf<C>['topics'][P] extends { readonly input: infer I }
      ? I
      : ChannelsOf<C>['topics'][P]['message']
    : never
}[keyof ChannelsOf<C>['topics'] & string]

/**
 * The metadata of a topic's members: what the topic's `presence` hook answers (`never` for a
 * topic without one).
 */
export type PresenceOf<C, Topic extends string> = {
  [P in keyof ChannelsOf<C>['topics'] & string]: Topic extends PatternTemplate<P>
    ? ChannelsOf<C>['topics'][P] extends { readonly presence: infer M }
      ? M
      : unknown
    : never
}[keyof ChannelsOf<C>['topics'] & string]

/** The request names a definition allows. */
export type RequestName<C> = keyof ChannelsOf<C>['requests'] & string

// --- options and state ---

/** The parts of a WebSocket the client uses: the browser's, `ws`'s, undici's, Deno's, Bun's. */
export interface WebSocketLike {
  readonly protocol: string
  // biome-ignore lint/suspicious/noExplicitAny: each implementation types its events its own way
  onopen: ((event: any) => void) | null
  // biome-ignore lint/suspicious/noExplicitAny: see onopen
  onmessage: ((event: any) => void) | null
  // biome-ignore lint/suspicious/noExplicitAny: see onopen
  onclose: ((event: any) => void) | null
  // biome-ignore lint/suspicious/noExplicitAny: see onopen
  onerror: ((event: any) => void) | null
  send(data: string): void
  close(code?: number, reason?: string): void
}

/** A WebSocket constructor: `globalThis.WebSocket`, or `ws`'s default export on Node 20. */
export type WebSocketConstructor = new (url: string, protocols: string) => WebSocketLike

/** The options of {@link createClient}. Every field has a default. */
export interface ClientOptions {
  /**
   * The WebSocket implementation: needed where there is no global one (Node 20: `ws`).
   * @defaultValue globalThis.WebSocket
   */
  WebSocket?: WebSocketConstructor
  /** The first reconnect delay's bound, in ms. @defaultValue 500 */
  minDelay?: number
  /** The largest reconnect delay's bound, in ms. @defaultValue 30000 */
  maxDelay?: number
  /** How much the bound grows per failed attempt. @defaultValue 2 */
  factor?: number
  /** Attempts in a row before the client gives up and closes. @defaultValue Infinity */
  maxRetries?: number
  /** How long, in ms, a connection must stay open for the attempts to count from 1 again. @defaultValue 5000 */
  minUptime?: number
  /** How long, in ms, a connection may take to open before it counts as failed. @defaultValue 10000 */
  connectTimeout?: number
  /**
   * After this many ms with nothing received, or nothing sent, the client sends a ping (so that
   * an idle client keeps proving it is alive, to a server that lists it as present).
   * @defaultValue 20000
   */
  heartbeatInterval?: number
  /** After a ping, this many ms with nothing received drop the connection and reconnect. @defaultValue 10000 */
  heartbeatTimeout?: number
  /** The default timeout of `request()` and of an acknowledged publish, in ms. @defaultValue 10000 */
  requestTimeout?: number
  /** Frames that may wait while disconnected. @defaultValue 100 */
  maxQueuedMessages?: number
  /** UTF-8 bytes that may wait while disconnected. @defaultValue 1048576 */
  maxQueuedBytes?: number
  /** More close codes after which the client does not reconnect (app codes such as 4001). */
  doNotRetry?: readonly number[]
  /** The random source of the jitter, in [0, 1): for tests. @defaultValue Math.random */
  random?: () => number
}

/**
 * What the app can show: `connecting` (the first attempt), `open`, `reconnecting` (the attempt
 * to come, its delay and the close that caused it), `closed` (for good: the app closed it, the
 * server said not to come back, the page went away, or `maxRetries` ran out).
 */
export type ClientState =
  | { readonly status: 'connecting' }
  | { readonly status: 'open' }
  | {
      readonly status: 'reconnecting'
      readonly attempt: number
      readonly delay: number
      readonly code: number
      readonly reason: string
    }
  | { readonly status: 'closed'; readonly code: number; readonly reason: string }

/** A topic's history could not be recovered whole: the app should reload what it shows. */
export interface Gap {
  readonly topic: string
  /**
   * `trimmed`: the history no longer reaches back; `epoch`: the history was lost;
   * `no-history`: the topic keeps none, so what was published while disconnected is lost.
   */
  readonly reason: 'trimmed' | 'epoch' | 'no-history'
  /** Where the subscription goes on from, when the topic keeps history. */
  readonly position: Position | undefined
}

/** How a topic's members changed: the ones that joined, and the ones that left. */
export interface PresenceDiff<M> {
  /** The members that joined, or joined again with other metadata: id and metadata. */
  readonly joins: ReadonlyArray<{ readonly id: string; readonly meta: M }>
  /** The members that left, or left with their old metadata. */
  readonly leaves: ReadonlyArray<{ readonly id: string; readonly meta: M }>
}

/** What a subscription calls. */
export interface SubscriptionHandlers<T, M = unknown> {
  /** A message, with its position when the topic keeps history. Never twice for one position. */
  message(data: T, position: Position | undefined): void
  /** The server confirmed the subscription (again after each reconnect). */
  subscribed?(position: Position | undefined): void
  /** Messages were lost: see {@link Gap}. */
  gap?(gap: Gap): void
  /** The server refused the subscription (`forbidden`, `not_found`...); it is dropped. */
  error?(error: ChannelError): void
  /**
   * The topic's members changed (on a topic with presence): `members` is the list now (also
   * {@link Subscription.members}), `diff` what changed. After each (re)subscription the server
   * sends the whole list, which replaces the one kept: `diff` is then the difference.
   */
  presence?(members: ReadonlyMap<string, M>, diff: PresenceDiff<M>): void
}

/** A topic the client holds. */
export interface Subscription<M = unknown> {
  readonly topic: string
  /** The position of the last message received, or where the subscription started. */
  readonly position: Position | undefined
  /**
   * The topic's members, id to metadata, on a topic whose definition has a `presence` hook:
   * the server's list, kept by its diffs (empty until the first list arrives, and for a topic
   * without presence). After a reconnect it is replaced by the server's new list.
   */
  readonly members: ReadonlyMap<string, M>
  /** This client's own member id in the topic, when it is a member. */
  readonly self: string | undefined
  /** Leaves the topic. */
  unsubscribe(): void
}

// --- the client ---

interface Pending {
  resolve(value: unknown): void
  reject(error: ChannelError): void
  /** Written to a socket: lost, not resent, when that socket drops. */
  sent: boolean
  timer?: ReturnType<typeof setTimeout>
  /** For a subscribe: the subscription it is for. */
  sub?: Sub
}

interface Sub {
  readonly topic: string
  // biome-ignore lint/suspicious/noExplicitAny: each topic's own type
  readonly handlers: SubscriptionHandlers<any, any>
  /** The topic's members, from the presence frames. */
  readonly members: Map<string, unknown>
  self: string | undefined
  position: Position | undefined
  /** Confirmed on some connection before: the next confirmation is a resume. */
  confirmed: boolean
  /** A gap frame came during the current subscribe. */
  gapSeen: boolean
  /**
   * The current subscribe's member list came: diffs apply from then on. One that comes before
   * it belongs to a subscription given up (its diffs still on their way) and is ignored.
   */
  listed: boolean
}

interface Queued {
  readonly text: string
  readonly bytes: number
  readonly id: number | undefined
}

const encoder = new TextEncoder()
/** The longest delay a timer holds (2^31 - 1 ms, about 24.8 days): a longer one fires at once. */
const MAX_DELAY = 2_147_483_647
/** A timer of `ms`, at most {@link MAX_DELAY}: an app's `Infinity` is then a wait, not a storm. */
const timer = (ms: number, run: () => void) => setTimeout(run, Math.min(MAX_DELAY, ms))

/**
 * Calls an app's handler. What it throws is reported as an uncaught error, after the client's
 * own bookkeeping is done, as an event listener's would be: it never breaks the client.
 */
// biome-ignore lint/suspicious/noExplicitAny: any handler
function call<A extends any[]>(handler: ((...args: A) => void) | undefined, ...args: A): void {
  try {
    handler?.(...args)
  } catch (err) {
    setTimeout(() => {
      throw err
    })
  }
}

/**
 * A channel client: one logical connection that outlives the WebSocket connections under it.
 * Made by {@link createClient}; it connects at once.
 * @typeParam C - the server's channel definition (`typeof chat`), for the types
 */
export class Client<C = unknown> {
  readonly #url: string
  readonly #options: Required<Omit<ClientOptions, 'doNotRetry'>> & { doNotRetry: readonly number[] }
  #ws: WebSocketLike | undefined
  #state: ClientState = { status: 'connecting' }
  readonly #listeners = new Set<(state: ClientState) => void>()
  #attempt = 0
  #timer: ReturnType<typeof setTimeout> | undefined
  #beat: ReturnType<typeof setTimeout> | undefined
  #last = 0
  #lastSent = 0
  #pinged = false
  #openedAt = 0
  #hint: { retry?: boolean; retryAfter?: number } | undefined
  #queue: Queued[] = []
  #queuedBytes = 0
  readonly #pending = new Map<number, Pending>()
  readonly #subs = new Map<string, Sub>()
  #id = 0
  #hidden = false

  /**
   * @param url - `ws:`, `wss:`, `http:` or `https:`; in a browser, relative to the page
   * @param options - see {@link ClientOptions}
   */
  constructor(url: string | URL, options: ClientOptions = {}) {
    const base = (globalThis as { location?: { href: string } }).location?.href
    const resolved = new URL(url, base)
    resolved.protocol = resolved.protocol.replace(/^http/, 'ws')
    this.#url = resolved.href
    const WebSocket =
      options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket
    if (!WebSocket) {
      throw new TypeError(
        'This runtime has no global WebSocket: pass one, createClient(url, { WebSocket }) (on Node 20, `ws`)',
      )
    }
    this.#options = {
      minDelay: 500,
      maxDelay: 30_000,
      factor: 2,
      maxRetries: Number.POSITIVE_INFINITY,
      minUptime: 5000,
      connectTimeout: 10_000,
      heartbeatInterval: 20_000,
      heartbeatTimeout: 10_000,
      requestTimeout: 10_000,
      maxQueuedMessages: 100,
      maxQueuedBytes: 1024 * 1024,
      doNotRetry: [],
      random: Math.random,
      ...options,
      WebSocket,
    }
    this.#listen(true)
    this.#connect()
  }

  /** The current state: see {@link ClientState}. */
  get state(): ClientState {
    return this.#state
  }

  /**
   * Calls `listener` with each new state.
   * @returns a function that stops the calls
   */
  onState(listener: (state: ClientState) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  /**
   * Subscribes to a topic, now or as soon as the client is open, and again after each reconnect
   * from the last position received (so that nothing is lost within the topic's history, and
   * nothing is delivered twice). One subscription per topic.
   * @throws TypeError when the client already holds the topic
   */
  subscribe<Topic extends TopicName<C>>(
    topic: Topic,
    handlers: SubscriptionHandlers<MessageOf<C, Topic>, PresenceOf<C, Topic>>,
  ): Subscription<PresenceOf<C, Topic>> {
    if (this.#subs.has(topic)) {
      throw new TypeError(`Already subscribed to ${topic}: unsubscribe() the other one first`)
    }
    const sub: Sub = {
      topic,
      handlers,
      members: new Map(),
      self: undefined,
      position: undefined,
      confirmed: false,
      gapSeen: false,
      listed: false,
    }
    this.#subs.set(topic, sub)
    if (this.#state.status === 'open') this.#subscribeOn(sub)
    return {
      topic,
      get position() {
        return sub.position
      },
      members: sub.members as ReadonlyMap<string, PresenceOf<C, Topic>>,
      get self() {
        return sub.self
      },
      unsubscribe: () => {
        if (this.#subs.get(topic) !== sub) return
        this.#subs.delete(topic)
        sub.members.clear()
        sub.self = undefined
        if (this.#state.status === 'open') {
          this.#write(`{"type":"unsubscribe","id":${++this.#id},"topic":${JSON.stringify(topic)}}`)
        }
      },
    }
  }

  /**
   * Publishes a message on a topic, to its other subscribers. While disconnected it waits in
   * the queue. With `{ ack: true }` it returns a promise that resolves once the server accepted
   * it, and rejects with a {@link ChannelError} (`invalid`, `forbidden`, `timeout`,
   * `disconnected`...).
   * @throws ChannelError `queue_full` or `closed`, without `ack`
   */
  publish<Topic extends TopicName<C>>(topic: Topic, data: PublishOf<C, Topic>): void
  publish<Topic extends TopicName<C>>(
    topic: Topic,
    data: PublishOf<C, Topic>,
    options: { ack: true; timeout?: number },
  ): Promise<void>
  publish(
    topic: string,
    data: unknown,
    options?: { ack?: boolean; timeout?: number },
  ): void | Promise<void> {
    const body = () => `"topic":${JSON.stringify(topic)},"data":${JSON.stringify(data) ?? 'null'}}`
    if (!options?.ack) {
      this.#send(`{"type":"publish",${body()}`, undefined)
      return
    }
    // Built inside the promise: input JSON cannot carry (a BigInt, a cycle) rejects it.
    return this.#call(
      (id) => `{"type":"publish","id":${id},${body()}`,
      options.timeout,
      'Publish',
    ) as Promise<void>
  }

  /**
   * Asks the server and waits for the answer. The request waits in the queue while
   * disconnected; once sent, it is never sent again: a connection that drops before the answer
   * fails it with `disconnected`.
   * @param name - the request's name
   * @param input - its input, checked by the server's schema
   * @param options - `timeout` in ms (default `requestTimeout`)
   * @returns the handler's output
   * @throws ChannelError with the server's code (`invalid` with `issues`...) or the client's
   */
  request<Name extends RequestName<C>>(
    name: Name,
    input: ChannelsOf<C>['requests'][Name]['input'],
    options: { timeout?: number } = {},
  ): Promise<ChannelsOf<C>['requests'][Name]['output']> {
    return this.#call(
      (id) =>
        `{"type":"request","id":${id},"name":${JSON.stringify(name)},"input":${JSON.stringify(input) ?? 'null'}}`,
      options.timeout,
      `Request ${name}`,
    )
  }

  /**
   * Closes the client for good: no reconnect. Requests waiting fail with `closed`. The
   * subscriptions are kept for {@link Client.open}.
   */
  close(code = 1000, reason = ''): void {
    this.#listen(false)
    this.#final(code, reason)
    this.#drop(code, reason)
  }

  /** Opens a closed client again, and restores its subscriptions from their positions. */
  open(): void {
    if (this.#state.status !== 'closed') return
    this.#attempt = 0
    this.#listen(true)
    this.#set({ status: 'connecting' })
    this.#connect()
  }

  // --- connections ---

  #connect(): void {
    clearTimeout(this.#timer)
    this.#hint = undefined // a close hint is about the connection it came on only
    let ws: WebSocketLike
    try {
      ws = new this.#options.WebSocket(this.#url, PROTOCOL)
    } catch (err) {
      // A constructor that refuses (a blocked port, a bad URL): a failed attempt like any other.
      this.#closed(1006, String((err as Error)?.message ?? err))
      return
    }
    this.#ws = ws
    ws.onopen = () => this.#opened()
    ws.onmessage = (event: { data: unknown }) => this.#received(event.data)
    ws.onclose = (event: { code: number; reason: string }) => this.#closed(event.code, event.reason)
    ws.onerror = () => {}
    this.#timer = timer(this.#options.connectTimeout, () =>
      this.#lost(`No connection within ${this.#options.connectTimeout} ms`),
    )
  }

  #opened(): void {
    clearTimeout(this.#timer)
    this.#openedAt = this.#last = this.#lastSent = Date.now()
    this.#pinged = false
    // Open before the listeners hear it: the subscriptions and what waited go out first, once,
    // so that a listener that subscribes or sends comes after them, not before or twice.
    this.#state = { status: 'open' }
    this.#heartbeat()
    for (const sub of this.#subs.values()) this.#subscribeOn(sub)
    const queue = this.#queue
    this.#queue = []
    this.#queuedBytes = 0
    for (const item of queue) this.#write(item.text, item.id)
    this.#set(this.#state)
  }

  #subscribeOn(sub: Sub): void {
    const id = ++this.#id
    sub.gapSeen = false
    sub.listed = false
    this.#pending.set(id, { resolve() {}, reject() {}, sent: false, sub })
    const since = sub.position ? `,"since":${JSON.stringify(sub.position)}` : ''
    this.#write(`{"type":"subscribe","id":${id},"topic":${JSON.stringify(sub.topic)}${since}}`, id)
  }

  /** The socket is gone (a close event, or given up on): reconnect, or stay closed. */
  #closed(code: number, reason: string): void {
    this.#drop()
    if (this.#state.status === 'closed') return
    const hint = this.#hint
    this.#hint = undefined
    const { doNotRetry, minUptime, maxRetries, minDelay, maxDelay, factor, random } = this.#options
    if (hint?.retry === false || NO_RETRY_CODES.includes(code) || doNotRetry.includes(code)) {
      this.#final(code, reason)
      return
    }
    if (this.#openedAt && Date.now() - this.#openedAt >= minUptime) this.#attempt = 0
    this.#openedAt = 0
    if (++this.#attempt > maxRetries) {
      this.#final(code, reason)
      return
    }
    const bound = Math.min(maxDelay, minDelay * factor ** (this.#attempt - 1))
    // A hint that is not a number of ms is ignored; a timer holds at most MAX_DELAY (past it,
    // timers fire at once: a storm).
    const after = hint?.retryAfter
    const least = typeof after === 'number' && after > 0 ? after : 0
    const delay = Math.min(MAX_DELAY, Math.max(Math.floor(random() * bound) || 0, least))
    this.#set({ status: 'reconnecting', attempt: this.#attempt, delay, code, reason })
    this.#timer = timer(delay, () => this.#connect())
  }

  /** Gives up on a socket that says nothing: closes it without waiting, and moves on as 1006. */
  #lost(reason: string): void {
    this.#drop(4000, reason)
    this.#closed(1006, reason)
  }

  /**
   * Lets go of the current socket: its events are ignored from now on, what was sent on it and
   * not answered fails with `disconnected`.
   */
  #drop(code?: number, reason?: string): void {
    clearTimeout(this.#timer)
    clearTimeout(this.#beat)
    const ws = this.#ws
    if (!ws) return
    this.#ws = undefined
    ws.onopen = ws.onmessage = ws.onclose = null
    if (code !== undefined) {
      try {
        ws.close(code, reason)
      } catch {
        // A code or reason a browser refuses to send (1001 from a page): close it plainly.
        ws.close()
      }
    }
    for (const [id, pending] of this.#pending) {
      if (!pending.sent) continue
      this.#pending.delete(id)
      clearTimeout(pending.timer)
      pending.reject(
        new ChannelError(
          'disconnected',
          'The connection dropped before the answer: it may or may not have been handled',
        ),
      )
    }
  }

  /**
   * The client is closed for good: everything waiting fails. It stops following the page unless
   * the page closed it (`pageshow` opens it again); `open()` follows it again.
   */
  #final(code: number, reason: string): void {
    if (this.#state.status === 'closed') return
    if (!this.#hidden) this.#listen(false)
    clearTimeout(this.#timer)
    this.#set({ status: 'closed', code, reason })
    const error = new ChannelError(
      'closed',
      `The client is closed (${code}${reason ? `: ${reason}` : ''})`,
    )
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer)
      pending.reject(error)
    }
    this.#pending.clear()
    this.#queue = []
    this.#queuedBytes = 0
  }

  #heartbeat(): void {
    const { heartbeatInterval, heartbeatTimeout } = this.#options
    // Silence either way: nothing received (is the server there?), or nothing sent (a server
    // that lists this client as present must hear from it).
    const idle = Date.now() - Math.min(this.#last, this.#lastSent)
    if (idle < heartbeatInterval) {
      this.#beat = timer(heartbeatInterval - idle, () => this.#heartbeat())
    } else if (!this.#pinged) {
      this.#pinged = true
      this.#write(PING)
      this.#beat = timer(heartbeatTimeout, () => this.#heartbeat())
    } else {
      this.#lost(`No heartbeat within ${heartbeatInterval + heartbeatTimeout} ms`)
    }
  }

  // --- frames ---

  #received(data: unknown): void {
    this.#last = Date.now()
    this.#pinged = false
    if (typeof data !== 'string') return
    let frame: Record<string, unknown>
    try {
      frame = JSON.parse(data)
    } catch {
      return
    }
    if (typeof frame !== 'object' || frame === null) return
    const id = frame.id as number
    const pending = this.#pending.get(id)
    switch (frame.type) {
      case 'message': {
        const sub = this.#subs.get(frame.topic as string)
        if (!sub) return
        const position = frame.position as Position | undefined
        const last = sub.position
        if (position && last && position.epoch === last.epoch && position.offset <= last.offset) {
          return // delivered before: never twice
        }
        if (position) sub.position = position
        call(sub.handlers.message, frame.data, position)
        return
      }
      case 'gap': {
        const sub = this.#subs.get(frame.topic as string)
        if (!sub) return
        sub.gapSeen = true
        sub.position = frame.position as Position
        call(sub.handlers.gap, {
          topic: sub.topic,
          reason: frame.reason as Gap['reason'],
          position: sub.position,
        })
        return
      }
      case 'subscribed': {
        this.#pending.delete(id)
        const sub = pending?.sub
        if (!sub || this.#subs.get(sub.topic) !== sub) return
        const position = frame.position as Position | undefined
        if (position && !(sub.position && sub.position.epoch === position.epoch)) {
          sub.position = position
        }
        if (!sub.gapSeen && sub.confirmed && (frame.recovered === false || !position)) {
          call(sub.handlers.gap, {
            topic: sub.topic,
            reason: position ? 'trimmed' : 'no-history',
            position,
          })
        }
        sub.confirmed = true
        call(sub.handlers.subscribed, sub.position)
        return
      }
      case 'ack':
      case 'response':
        if (!pending) return
        this.#pending.delete(id)
        clearTimeout(pending.timer)
        pending.resolve(frame.output)
        return
      case 'error': {
        if (!pending) return
        this.#pending.delete(id)
        clearTimeout(pending.timer)
        const error = new ChannelError(
          frame.code as string,
          frame.message as string,
          frame.issues as Issue[] | undefined,
          frame.details,
        )
        const sub = pending.sub
        if (sub && this.#subs.get(sub.topic) === sub) {
          this.#subs.delete(sub.topic)
          // Ended, as by unsubscribe(): it lists nobody (a refusal on a reconnect, say).
          sub.members.clear()
          sub.self = undefined
          call(sub.handlers.error, error)
        }
        pending.reject(error)
        return
      }
      case 'ping':
        this.#write(PONG)
        return
      case 'presence':
        this.#presence(frame)
        return
      case 'close':
        this.#hint = frame
    }
  }

  /** A presence frame: the whole list (`members`), or a diff (`joins`, `leaves`). */
  #presence(frame: Record<string, unknown>): void {
    const sub = this.#subs.get(frame.topic as string)
    if (!sub) return
    type Member = { readonly id: string; readonly meta: unknown }
    const members = sub.members
    let joins: Member[] = []
    let leaves: Member[] = []
    if (Array.isArray(frame.members)) {
      const next = new Map((frame.members as Member[]).map((m) => [m.id, m.meta]))
      for (const [id, meta] of members) {
        if (!next.has(id) || JSON.stringify(next.get(id)) !== JSON.stringify(meta)) {
          leaves.push({ id, meta })
        }
      }
      for (const [id, meta] of next) {
        if (!members.has(id) || JSON.stringify(members.get(id)) !== JSON.stringify(meta)) {
          joins.push({ id, meta })
        }
      }
      members.clear()
      for (const [id, meta] of next) members.set(id, meta)
      sub.self = typeof frame.self === 'string' ? frame.self : undefined
      sub.listed = true
    } else {
      // A diff before this subscription's list: the server sent it for one given up.
      if (!sub.listed) return
      leaves = Array.isArray(frame.leaves) ? (frame.leaves as Member[]) : []
      joins = Array.isArray(frame.joins) ? (frame.joins as Member[]) : []
      for (const member of leaves) members.delete(member.id)
      for (const member of joins) members.set(member.id, member.meta)
    }
    call(sub.handlers.presence, members, { joins, leaves })
  }

  /** A frame that expects an answer, with its timeout. */
  #call(text: (id: number) => string, timeout: number | undefined, what: string): Promise<never> {
    return new Promise((resolve, reject) => {
      const id = ++this.#id
      const ms = timeout ?? this.#options.requestTimeout
      const pending: Pending = { resolve, reject, sent: false }
      pending.timer = timer(ms, () => {
        this.#pending.delete(id)
        this.#unqueue(id)
        reject(new ChannelError('timeout', `${what} had no answer within ${ms} ms`))
      })
      this.#pending.set(id, pending)
      try {
        this.#send(text(id), id)
      } catch (err) {
        this.#pending.delete(id)
        clearTimeout(pending.timer)
        reject(err)
      }
    })
  }

  /** Sends now, or queues while disconnected; throws when the queue is full or the client closed. */
  #send(text: string, id: number | undefined): void {
    const status = this.#state.status
    if (status === 'open') {
      this.#write(text, id)
      return
    }
    if (status === 'closed') {
      throw new ChannelError('closed', 'The client is closed: call open() to reconnect')
    }
    const bytes = encoder.encode(text).length
    const { maxQueuedMessages, maxQueuedBytes } = this.#options
    if (this.#queue.length >= maxQueuedMessages || this.#queuedBytes + bytes > maxQueuedBytes) {
      throw new ChannelError(
        'queue_full',
        `The send queue is full (${this.#queue.length} frames, ${this.#queuedBytes} bytes) while disconnected: wait for the open state, or raise maxQueuedMessages and maxQueuedBytes`,
      )
    }
    this.#queue.push({ text, bytes, id })
    this.#queuedBytes += bytes
  }

  #unqueue(id: number): void {
    const index = this.#queue.findIndex((item) => item.id === id)
    if (index < 0) return
    this.#queuedBytes -= this.#queue[index]!.bytes
    this.#queue.splice(index, 1)
  }

  /** Writes to the open socket; the frame's answer, if any, now depends on that socket. */
  #write(text: string, id?: number): void {
    const pending = id === undefined ? undefined : this.#pending.get(id)
    if (pending) pending.sent = true
    this.#lastSent = Date.now()
    this.#ws?.send(text)
  }

  #set(state: ClientState): void {
    this.#state = state
    for (const listener of this.#listeners) call(listener, state)
  }

  // --- the page ---

  readonly #onPageHide = () => {
    if (this.#state.status === 'closed') return
    this.#hidden = true
    this.#final(1001, 'The page went away')
    this.#drop(1001, 'The page went away')
  }

  readonly #onPageShow = (event: { persisted?: boolean }) => {
    if (!this.#hidden || !event.persisted) return
    this.#hidden = false
    this.open()
  }

  /** Follows the page where there is one: closed on `pagehide`, open again on a `pageshow` from the back/forward cache. */
  #listen(on: boolean): void {
    const page = globalThis as {
      addEventListener?: (type: string, listener: never) => void
      removeEventListener?: (type: string, listener: never) => void
    }
    if (!('onpagehide' in globalThis)) return
    const method = on ? page.addEventListener : page.removeEventListener
    method?.call(page, 'pagehide', this.#onPageHide as never)
    method?.call(page, 'pageshow', this.#onPageShow as never)
  }
}

/**
 * Makes a {@link Client} and connects it.
 * @typeParam C - the server's channel definition, `typeof chat`, for the types
 * @param url - the channel route: `wss://example.com/ws`, or `/ws` in a browser
 * @param options - see {@link ClientOptions}
 */
export function createClient<C = unknown>(url: string | URL, options?: ClientOptions): Client<C> {
  return new Client<C>(url, options)
}
