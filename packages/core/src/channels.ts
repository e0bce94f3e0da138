/**
 * Channels: an event controller that speaks the `handshake.v1` protocol of `@handshake/client`,
 * built from a definition of topics and requests. Each topic says who may subscribe and publish,
 * and what a published message must look like; each request has an input schema and a handler.
 * Schemas are Standard Schema (zod, valibot, arktype...). The same definition types the client:
 * `createClient<typeof chat>(url)`.
 *
 * ```ts
 * import { upgrade } from '@handshake/core'
 * import { CHANNEL_PROTOCOL, Channels } from '@handshake/core/channels'
 * import * as v from 'valibot'
 *
 * export const chat = new Channels<{ name: string }>({
 *   open(conn, c) {
 *     conn.data = { name: c.req.query('name') ?? 'anonymous' }
 *   },
 * })
 *   .topic('rooms/:room', {
 *     message: v.object({ text: v.string(), from: v.optional(v.string()) }),
 *     publish: ({ conn, data }) => ({ text: data.text, from: conn.data.name }),
 *   })
 *   .request('whoami', v.object({}), ({ conn }) => conn.data.name)
 *
 * app.get('/ws', upgrade(chat, { subprotocols: [CHANNEL_PROTOCOL] }))
 * ```
 * @module
 */
import type { StandardSchemaV1 } from '@standard-schema/spec'
import type { Context } from 'hono'
import { watchersOf } from './channels-presence.js'
import {
  CHANNEL_PROTOCOL,
  type ClientFrame,
  FrameError,
  frame,
  type IssueFrame,
  issueFrames,
  MESSAGE_PREFIX,
  messageFrame,
  PONG,
  parseFrame,
  withPosition,
} from './channels-protocol.js'
import { type CloseError, truncateReason } from './close.js'
import type { Conn } from './conn.js'
import { resolved } from './conn-fields.js'
import type { EventController, Message, MessageData } from './contracts.js'
import type { Delivery, Subscription } from './history.js'
import { WAKE } from './internal.js'
import { checkPresenceMeta, type PresenceMeta } from './presence.js'

export type { StandardSchemaV1 } from '@standard-schema/spec'
export {
  CHANNEL_PROTOCOL,
  FrameError,
  type IssueFrame,
  type Json,
  PING,
  PONG,
} from './channels-protocol.js'

// --- types ---

/** The parameters of a topic pattern: `'rooms/:room'` gives `{ room: string }`. */
export type ParamsOf<Pattern extends string> =
  Pattern extends `${string}:${infer Param}/${infer Rest}`
    ? { [K in Param]: string } & ParamsOf<Rest>
    : Pattern extends `${string}:${infer Param}`
      ? { [K in Param]: string }
      : // biome-ignore lint/complexity/noBannedTypes: a pattern without parameters has none
        {}

/** What a topic's hooks are given. */
export interface TopicContext<Data, Pattern extends string = string> {
  /** The connection that subscribes or publishes. */
  readonly conn: Conn<Data>
  /** The topic's name, as the client sent it: `rooms/lobby`. */
  readonly topic: string
  /** The pattern's parameters in it: `{ room: 'lobby' }` for `rooms/:room`. */
  readonly params: ParamsOf<Pattern>
}

/** What {@link TopicDefinition.authorize} is given: the topic, and what the connection asks. */
export interface AuthorizeContext<Data, Pattern extends string = string>
  extends TopicContext<Data, Pattern> {
  /** `'subscribe'`, or `'publish'` for each message a client publishes. */
  readonly action: 'subscribe' | 'publish'
}

/** What {@link TopicDefinition.publish} is given: the message, once its schema accepted it. */
export interface PublishContext<Data, Pattern extends string, Value>
  extends TopicContext<Data, Pattern> {
  /** The schema's output for what the client published. */
  readonly data: Value
}

/** One topic of a {@link Channels} definition. */
export interface TopicDefinition<
  Data,
  Pattern extends string,
  S extends StandardSchemaV1,
  M extends PresenceMeta = PresenceMeta,
> {
  /**
   * What a message published on the topic must look like. A client's publish that fails it gets
   * an `invalid` error reply with the schema's issues, and reaches nobody. Its output is the type
   * the client's subscribers receive.
   */
  readonly message: S
  /**
   * Who may subscribe and publish: called for every subscribe, and for every publish, with the
   * connection (and its `conn.data`) and the topic. `false` is an error reply (`forbidden`),
   * never a close. Without it, every connection of the route may do both.
   */
  authorize?(context: AuthorizeContext<Data, Pattern>): boolean | Promise<boolean>
  /**
   * What is sent for a publish the schema accepted: the message as given by default. Return
   * another (add who sent it, from `conn.data`), or `undefined` to send nothing. Throw a
   * {@link ChannelError} to refuse it with an error reply.
   */
  publish?(
    context: PublishContext<Data, Pattern, StandardSchemaV1.InferOutput<S>>,
  ):
    | StandardSchemaV1.InferOutput<S>
    | undefined
    | Promise<StandardSchemaV1.InferOutput<S> | undefined>
  /**
   * Turns presence on for the topic: each subscriber is sent the topic's members (a `presence`
   * frame with `members`, and `self`, its own id when it is one, right after `subscribed`),
   * then every join and leave as a diff (`joins`, `leaves`), on every instance (with a
   * backplane that shares presence). Called once per subscribe, after `authorize`: its answer
   * is the subscriber's metadata (JSON, at most 1 KiB: see `conn.subscribe(topic, { presence })`),
   * or `undefined` for a subscriber that sees the members without being one. Metadata that is
   * not JSON, or too big, is the server's bug: the client gets an `internal` error, `onError`
   * the error. Without it, subscribers get no presence frame.
   */
  presence?(context: TopicContext<Data, Pattern>): M | undefined | Promise<M | undefined>
}

/** What a request's handler is given. */
export interface RequestContext<Data, Input> {
  /** The connection that asked. */
  readonly conn: Conn<Data>
  /** The request's name. */
  readonly name: string
  /** The schema's output for the request's input. */
  readonly input: Input
}

/** The options of {@link Channels}: the connection's lifecycle, and the protocol's bounds. */
export interface ChannelsOptions<Data> {
  /**
   * The connection is open: read what you need from the upgrade request into `conn.data`
   * (checked by the authorization hooks later), as in any event controller.
   */
  open?(conn: Conn<Data>, c: Context): void | Promise<void>
  /** The connection has closed, by either side. */
  close?(conn: Conn<Data>, error: CloseError): void | Promise<void>
  /**
   * A hook or handler failed with an error that is not a {@link ChannelError}: the client got an
   * `internal` error reply, and this gets the error. Default: `console.error`.
   */
  onError?(error: unknown, conn: Conn<Data>): void
  /**
   * Requests one connection may have running at once. Past it, the connection's next frames
   * wait (and, past the upgrader's `maxInboundBuffer`, its socket pauses or it closes with 1008),
   * pings included, until a request finishes or the connection closes.
   * @defaultValue 16
   */
  maxConcurrentRequests?: number
  /**
   * Garbage replies in a row (input the schema refused, an unknown topic or request) before the
   * connection is closed with 1008: a peer that keeps sending garbage. A frame that succeeds
   * resets the count. A refusal (`forbidden`) and a handler's own {@link ChannelError}, which a
   * well-behaved client can get any number of times, do not count.
   * @defaultValue 10
   */
  maxInvalidFrames?: number
}

/**
 * The types a {@link Channels} definition gives its clients: each topic pattern's message, each
 * request's input and output. `createClient<typeof chat>()` reads them.
 */
export interface ChannelTypes {
  /**
   * Each pattern's `message` (what subscribers get), `input` (what a client publishes) and
   * `presence` (its members' metadata; `never` for a topic without presence).
   */
  readonly topics: {
    readonly [pattern: string]: {
      readonly message: unknown
      readonly input?: unknown
      readonly presence?: unknown
    }
  }
  readonly requests: {
    readonly [name: string]: { readonly input: unknown; readonly output: unknown }
  }
}

/**
 * An error a hook or handler throws to answer with an error frame of its own `code`
 * (`'not_found'`, `'conflict'`...): the client's promise rejects with it, `message` and `details`
 * included. Any other error is answered as `internal`, without its message.
 */
export class ChannelError extends Error {
  override readonly name = 'ChannelError'
  /**
   * @param code - what went wrong, for code to tell apart: `'conflict'`, `'not_found'`...
   * @param message - for people
   * @param details - JSON for the client
   */
  constructor(
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message)
  }
}

/** Anything that publishes: a hub's `Topics` (everyone) or a `Conn` (everyone but itself). */
export interface Publisher {
  publish(topic: string, data: MessageData): void
}

// --- the controller ---

interface TopicEntry {
  readonly pattern: string
  readonly segments: string[]
  // biome-ignore lint/suspicious/noExplicitAny: each topic's own types, erased
  readonly definition: TopicDefinition<any, string, StandardSchemaV1, any>
}

interface RequestEntry {
  readonly input: StandardSchemaV1
  // biome-ignore lint/suspicious/noExplicitAny: each request's own types, erased
  readonly handler: (context: RequestContext<any, any>) => unknown
}

/** A connection's bookkeeping, in memory: a hibernation resets it, which only forgives. */
interface ConnState {
  invalid: number
  running: number
  wake: (() => void) | undefined
}

type PublishFrame = ClientFrame & { type: 'publish' }

type ErrorReply = { code: string; message: string; issues?: IssueFrame[]; details?: unknown }

/**
 * A channel controller: an event controller for the `handshake.v1` protocol, built from topics
 * ({@link Channels.topic}) and requests ({@link Channels.request}). Serve it with
 * `upgrade(channels, { subprotocols: [CHANNEL_PROTOCOL] })`; a connection that did not agree on
 * {@link CHANNEL_PROTOCOL} is closed with 1002.
 *
 * Each frame gets an answer: a subscribe `subscribed`, a publish with an id `ack`, a request
 * `response`, or any of them an `error` with a code (`invalid` with the schema's issues,
 * `forbidden`, `not_found`, `internal`, or a {@link ChannelError}'s own). Text that is not JSON
 * closes with 1007, JSON that is not a frame with 1008, a binary message with 1003, and
 * `maxInvalidFrames` `invalid` or `not_found` replies in a row with 1008.
 *
 * Frames of one connection are handled in order, one at a time, except requests: up to
 * `maxConcurrentRequests` run side by side, and their responses come as they finish.
 *
 * @typeParam Data - the connection's `conn.data`, which `open` sets
 * @typeParam T - the topics' types, for the client (built by {@link Channels.topic})
 * @typeParam R - the requests' types, for the client (built by {@link Channels.request})
 */
export class Channels<
  Data = unknown,
  // biome-ignore lint/complexity/noBannedTypes: no topics yet
  T extends ChannelTypes['topics'] = {},
  // biome-ignore lint/complexity/noBannedTypes: no requests yet
  R extends ChannelTypes['requests'] = {},
> implements EventController<Data>
{
  /** The types the client reads: never set, only typed. */
  declare readonly '~channels'?: { readonly topics: T; readonly requests: R }

  readonly #topics: TopicEntry[] = []
  /** The patterns without parameters that no earlier pattern matches: their own first match. */
  readonly #exact = new Map<string, TopicEntry>()
  readonly #requests = new Map<string, RequestEntry>()
  readonly #options: ChannelsOptions<Data>
  readonly #maxConcurrent: number
  readonly #maxInvalid: number
  readonly #states = new WeakMap<Conn<Data>, ConnState>()

  /** @param options - the lifecycle hooks and bounds; every field is optional */
  constructor(options: ChannelsOptions<Data> = {}) {
    this.#options = options
    this.#maxConcurrent = positive(options.maxConcurrentRequests ?? 16, 'maxConcurrentRequests')
    this.#maxInvalid = positive(options.maxInvalidFrames ?? 10, 'maxInvalidFrames')
  }

  /**
   * Adds a topic, or a family of them: `'rooms/:room'` matches `rooms/lobby` (a parameter is one
   * non-empty segment between `/`). The first pattern that matches a topic wins, in the order
   * they were added.
   * @param pattern - the topic's name, with `:name` parameters
   * @param definition - its message schema, who may subscribe and publish, and its presence
   * @returns this controller, with the topic in its types
   */
  topic<Pattern extends string, S extends StandardSchemaV1, M extends PresenceMeta = never>(
    pattern: Pattern,
    definition: TopicDefinition<Data, Pattern, S, M>,
  ): Channels<
    Data,
    T & {
      readonly [K in Pattern]: {
        readonly message: StandardSchemaV1.InferOutput<S>
        readonly input: StandardSchemaV1.InferInput<S>
        readonly presence: M
      }
    },
    R
  > {
    const segments = pattern.split('/')
    if (segments.some((segment) => segment === '' || segment === ':')) {
      throw new TypeError(`Topic pattern "${pattern}" has an empty segment: write "rooms/:room"`)
    }
    const entry = { pattern, segments, definition }
    // A pattern without parameters is found by name, unless an earlier one matches it first.
    if (!segments.some((segment) => segment.startsWith(':')) && !this.#match(pattern)) {
      this.#exact.set(pattern, entry)
    }
    this.#topics.push(entry)
    return this as never
  }

  /**
   * Adds a request: `client.request(name, input)` is checked against `input`, then answered with
   * what `handler` returns (JSON), or with an error frame for what it throws.
   * @param name - the request's name
   * @param input - the input's schema
   * @param handler - the answer; a {@link ChannelError} it throws is an error frame of its code
   * @returns this controller, with the request in its types
   */
  request<Name extends string, S extends StandardSchemaV1, Output>(
    name: Name,
    input: S,
    handler: (context: RequestContext<Data, StandardSchemaV1.InferOutput<S>>) => Output,
  ): Channels<
    Data,
    T,
    R & {
      readonly [K in Name]: {
        readonly input: StandardSchemaV1.InferInput<S>
        readonly output: Awaited<Output>
      }
    }
  > {
    if (this.#requests.has(name)) throw new TypeError(`Request "${name}" is defined twice`)
    this.#requests.set(name, { input, handler })
    return this as never
  }

  /**
   * Publishes `data` on `topic` as a channel message, from the server: through a hub's topics
   * (`getHub(c).topics`, every subscriber) or a connection (every subscriber but itself). It
   * is not checked against the topic's schema; the types are.
   */
  publish<Topic extends TopicName<T>>(
    target: Publisher,
    topic: Topic,
    data: MessageOf<T, Topic>,
  ): void {
    target.publish(topic, messageFrame(topic, data))
  }

  /** @internal The event controller's `open`: checks the subprotocol, then the app's `open`. */
  open(conn: Conn<Data>, c: Context): void | Promise<void> {
    if (conn.protocol !== CHANNEL_PROTOCOL) {
      void conn
        .close(
          1002,
          `Expected subprotocol ${CHANNEL_PROTOCOL}: list it in upgrade()'s subprotocols`,
        )
        .catch(() => {})
      return
    }
    return this.#options.open?.(conn, c)
  }

  /** @internal The event controller's `close`: the app's. */
  close(conn: Conn<Data>, error: CloseError): void | Promise<void> {
    watchersOf(conn.hub.topics).remove(conn)
    return this.#options.close?.(conn, error)
  }

  /** @internal A hibernation woke `conn`: it gets the presence frames of its topics again. */
  [WAKE](conn: Conn<Data>): void {
    for (const topic of conn.topics) {
      if (this.#match(topic)?.entry.definition.presence) {
        watchersOf(conn.hub.topics).watch(conn, topic)
      }
    }
  }

  /** @internal One frame from the client. */
  message(conn: Conn<Data>, message: Message): void | Promise<void> {
    if (conn.state !== 'open') return
    if (message.type === 'binary') {
      return refuse(
        conn,
        1003,
        `Binary messages are not ${CHANNEL_PROTOCOL} frames: send JSON text`,
      )
    }
    let parsed: ClientFrame
    try {
      parsed = parseFrame(message.data)
    } catch (err) {
      if (err instanceof FrameError) return refuse(conn, err.code, err.message)
      throw err
    }
    switch (parsed.type) {
      case 'ping':
        return send(conn, PONG)
      case 'pong':
        return
      case 'subscribe':
        return this.#subscribe(conn, parsed)
      case 'unsubscribe':
        return this.#unsubscribe(conn, parsed)
      case 'publish':
        return this.#publish(conn, parsed)
      case 'request':
        return this.#request(conn, parsed)
    }
  }

  // --- frames ---

  async #subscribe(conn: Conn<Data>, frame: ClientFrame & { type: 'subscribe' }): Promise<void> {
    const { id, topic } = frame
    const match = this.#match(topic)
    if (!match) return this.#fail(conn, id, notFound(topic), true)
    let subscription: Subscription
    const present = match.entry.definition.presence
    let meta: PresenceMeta | undefined
    try {
      if (!(await this.#authorize(conn, match, topic, 'subscribe'))) {
        return this.#fail(conn, id, forbidden('subscribe to', topic))
      }
      // The app's metadata is checked here: refused, it is the server's bug, not the client's.
      meta = present && (await present({ conn, topic, params: match.params }))
      if (meta !== undefined) meta = checkPresenceMeta(meta).meta
    } catch (err) {
      return this.#fail(conn, id, this.#errorReply(conn, err))
    }
    try {
      const options = meta === undefined ? {} : { presence: meta }
      subscription = await conn.subscribe(
        topic,
        frame.since ? { ...options, since: frame.since } : options,
      )
      // The members are read before the state is sent: a first subscriber waits for them.
      if (present && conn.topics.has(topic)) await conn.hub.topics.presence(topic).catch(() => {})
    } catch (err) {
      // conn.subscribe's refusals of a name or a count are the client's to fix; only theirs.
      const refused =
        (err instanceof RangeError || err instanceof TypeError) &&
        /topic|subscri/i.test(err.message)
      return this.#fail(
        conn,
        id,
        refused ? { code: 'invalid', message: err.message } : this.#errorReply(conn, err),
        refused,
      )
    }
    this.#succeeded(conn)
    const { position, recovered } = subscription
    const where = position ? `,"position":${JSON.stringify(position)}` : ''
    const subscribed = send(
      conn,
      `{"type":"subscribed","id":${id},"topic":${JSON.stringify(topic)}${where},"recovered":${recovered}}`,
    )
    // The state, then every diff from here on: in the same turn, so that none falls between.
    if (!present || !conn.topics.has(topic)) return subscribed
    return send(conn, watchersOf(conn.hub.topics).add(conn, topic))
  }

  #unsubscribe(conn: Conn<Data>, frame: ClientFrame & { type: 'unsubscribe' }): Promise<void> {
    try {
      conn.unsubscribe(frame.topic)
      watchersOf(conn.hub.topics).remove(conn, frame.topic)
    } catch (err) {
      return this.#fail(conn, frame.id, this.#errorReply(conn, err))
    }
    return send(conn, `{"type":"ack","id":${frame.id}}`)
  }

  /**
   * Authorizes, validates and publishes a client's message. Hooks and a schema that answer
   * synchronously are run at once, with no promise (the next frame need not wait a turn); the
   * first that returns a promise hands the rest to {@link Channels.#publishLater}.
   */
  #publish(conn: Conn<Data>, frame: PublishFrame): void | Promise<void> {
    const { id, topic } = frame
    const match = this.#match(topic)
    if (!match) return this.#fail(conn, id, notFound(topic), true)
    const { definition } = match.entry
    try {
      if (definition.authorize) {
        const allowed = definition.authorize({
          conn,
          topic,
          params: match.params,
          action: 'publish',
        })
        if (isThenable(allowed)) return this.#publishLater(conn, frame, match, allowed, 'authorize')
        if (allowed !== true) return this.#fail(conn, id, forbidden('publish on', topic))
      }
      const result = definition.message['~standard'].validate(frame.data)
      if (isThenable(result)) return this.#publishLater(conn, frame, match, result, 'validate')
      if (result.issues) return this.#fail(conn, id, invalid(result.issues), true)
      let data: unknown = result.value
      if (definition.publish) {
        data = definition.publish({ conn, topic, params: match.params, data })
        if (isThenable(data)) return this.#publishLater(conn, frame, match, data, 'publish')
      }
      const refused = data === undefined ? undefined : publishFrom(conn, topic, data)
      if (refused) return this.#fail(conn, id, refused, true)
    } catch (err) {
      return this.#fail(conn, id, this.#errorReply(conn, err))
    }
    return this.#published(conn, id)
  }

  /** The rest of {@link Channels.#publish}, from the step whose promise `pending` is. */
  async #publishLater(
    conn: Conn<Data>,
    frame: PublishFrame,
    match: { entry: TopicEntry; params: Record<string, string> },
    pending: PromiseLike<unknown>,
    step: 'authorize' | 'validate' | 'publish',
  ): Promise<void> {
    const { id, topic } = frame
    const { definition } = match.entry
    try {
      let value = await pending
      if (step === 'authorize') {
        if (value !== true) return this.#fail(conn, id, forbidden('publish on', topic))
        value = await definition.message['~standard'].validate(frame.data)
        step = 'validate'
      }
      if (step === 'validate') {
        const result = value as StandardSchemaV1.Result<unknown>
        if (result.issues) return this.#fail(conn, id, invalid(result.issues), true)
        value = definition.publish
          ? await definition.publish({ conn, topic, params: match.params, data: result.value })
          : result.value
      }
      const refused = value === undefined ? undefined : publishFrom(conn, topic, value)
      if (refused) return this.#fail(conn, id, refused, true)
    } catch (err) {
      return this.#fail(conn, id, this.#errorReply(conn, err))
    }
    return this.#published(conn, id)
  }

  /** A publish went through: the garbage count restarts, and an `id` gets its `ack`. */
  #published(conn: Conn<Data>, id: number | undefined): Promise<void> | undefined {
    this.#succeeded(conn)
    if (id !== undefined) return send(conn, `{"type":"ack","id":${id}}`)
    return undefined
  }

  /**
   * Validates and runs a request. A schema and a handler that answer synchronously are answered
   * at once; one that returns a promise runs beside the connection's next frames, up to
   * `maxConcurrentRequests`.
   */
  #request(conn: Conn<Data>, frame: ClientFrame & { type: 'request' }): void | Promise<void> {
    const { id, name } = frame
    const entry = this.#requests.get(name)
    if (!entry) {
      return this.#fail(
        conn,
        id,
        {
          code: 'not_found',
          message: `No request is named ${JSON.stringify(name)}`.slice(0, 200),
        },
        true,
      )
    }
    let output: unknown
    try {
      const checked = entry.input['~standard'].validate(frame.input)
      if (isThenable(checked)) {
        output = Promise.resolve(checked).then((result) =>
          result.issues
            ? new Invalid(result.issues)
            : entry.handler({ conn, name, input: result.value }),
        )
      } else if (checked.issues) {
        return this.#fail(conn, id, invalid(checked.issues), true)
      } else {
        output = entry.handler({ conn, name, input: checked.value })
      }
    } catch (err) {
      return this.#fail(conn, id, this.#errorReply(conn, err))
    }
    if (!isThenable(output)) return this.#respond(conn, id, output)
    const state = this.#state(conn)
    state.running++
    Promise.resolve(output)
      .then(
        (value) =>
          value instanceof Invalid
            ? this.#fail(conn, id, invalid(value.issues), true)
            : this.#respond(conn, id, value),
        (err: unknown) => this.#fail(conn, id, this.#errorReply(conn, err)),
      )
      .finally(() => {
        state.running--
        const wake = state.wake
        state.wake = undefined
        wake?.()
      })
    // At the bound, the connection's next frame waits until a request finishes, or until the
    // connection closes: its close hook must not wait for handlers that may never finish.
    if (state.running >= this.#maxConcurrent) {
      const signal = conn.signal
      if (signal.aborted) return
      return new Promise((resolve) => {
        const wake = () => {
          signal.removeEventListener('abort', wake)
          if (state.wake === wake) state.wake = undefined
          resolve()
        }
        state.wake = wake
        signal.addEventListener('abort', wake)
      })
    }
  }

  #respond(conn: Conn<Data>, id: number, output: unknown): Promise<void> {
    let text: string
    try {
      text = `{"type":"response","id":${id},"output":${JSON.stringify(output) ?? 'null'}}`
    } catch (err) {
      return this.#fail(conn, id, this.#errorReply(conn, err))
    }
    this.#succeeded(conn)
    return send(conn, text)
  }

  // --- helpers ---

  #match(topic: string): { entry: TopicEntry; params: Record<string, string> } | undefined {
    const exact = this.#exact.get(topic)
    if (exact) return { entry: exact, params: {} }
    const segments = topic.split('/')
    next: for (const entry of this.#topics) {
      if (entry.segments.length !== segments.length) continue
      const params: Record<string, string> = {}
      for (let i = 0; i < segments.length; i++) {
        const want = entry.segments[i] as string
        const got = segments[i] as string
        if (want.startsWith(':')) {
          if (got === '') continue next
          params[want.slice(1)] = got
        } else if (want !== got) {
          continue next
        }
      }
      return { entry, params }
    }
    return undefined
  }

  async #authorize(
    conn: Conn<Data>,
    match: { entry: TopicEntry; params: Record<string, string> },
    topic: string,
    action: 'subscribe' | 'publish',
  ): Promise<boolean> {
    const authorize = match.entry.definition.authorize
    if (!authorize) return true
    return (await authorize({ conn, topic, params: match.params, action })) === true
  }

  #state(conn: Conn<Data>): ConnState {
    let state = this.#states.get(conn)
    if (!state) {
      state = { invalid: 0, running: 0, wake: undefined }
      this.#states.set(conn, state)
    }
    return state
  }

  #succeeded(conn: Conn<Data>): void {
    const state = this.#states.get(conn)
    if (state) state.invalid = 0
  }

  /**
   * An error reply. One for garbage (input the schema refused, an unknown topic or request)
   * counts toward `maxInvalidFrames`; a refusal or an app's own error, which a well-behaved
   * client can get any number of times, does not.
   */
  #fail(
    conn: Conn<Data>,
    id: number | undefined,
    reply: ErrorReply,
    garbage = false,
  ): Promise<void> {
    if (garbage) {
      const state = this.#state(conn)
      if (++state.invalid >= this.#maxInvalid) {
        return refuse(
          conn,
          1008,
          `Too many invalid frames: ${state.invalid} error replies in a row (last: ${reply.code})`,
        )
      }
    }
    return send(
      conn,
      frame(id === undefined ? { type: 'error', ...reply } : { type: 'error', id, ...reply }),
    )
  }

  #errorReply(conn: Conn<Data>, err: unknown): ErrorReply {
    if (err instanceof ChannelError) {
      return err.details === undefined
        ? { code: err.code, message: err.message }
        : { code: err.code, message: err.message, details: err.details }
    }
    try {
      if (this.#options.onError) this.#options.onError(err, conn)
      else console.error('A channel hook or handler failed:', err)
    } catch (reportError) {
      console.error('onError failed:', reportError)
    }
    return { code: 'internal', message: 'Internal server error' }
  }
}

// --- module helpers ---

/** A topic name the client may use: each pattern with its parameters as any string. */
export type TopicName<T> = {
  [P in keyof T & string]: PatternTemplate<P>
}[keyof T & string]

/** `'rooms/:room'` as a template type: `` `rooms/${string}` ``. */
export type PatternTemplate<P extends string> = P extends `${infer Head}:${string}/${infer Rest}`
  ? `${Head}${string}/${PatternTemplate<Rest>}`
  : P extends `${infer Head}:${string}`
    ? `${Head}${string}`
    : P

/** The message type of the topic `Topic` in the topics' types `T`. */
export type MessageOf<T, Topic extends string> = {
  [P in keyof T & string]: Topic extends PatternTemplate<P>
    ? T[P] extends { readonly message: infer M }
      ? M
      : never
    : never
}[keyof T & string]

function positive(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a whole number of 1 or more (it is ${value})`)
  }
  return value
}

function notFound(topic: string): ErrorReply {
  return { code: 'not_found', message: `No topic matches ${JSON.stringify(topic)}`.slice(0, 300) }
}

function forbidden(what: string, topic: string): ErrorReply {
  return {
    code: 'forbidden',
    message: `Not allowed to ${what} ${JSON.stringify(topic)}`.slice(0, 300),
  }
}

function invalid(issues: ReadonlyArray<StandardSchemaV1.Issue>): ErrorReply {
  return {
    code: 'invalid',
    message: 'The input does not match the schema',
    issues: issueFrames(issues),
  }
}

/**
 * Publishes a client's message from its connection, if still open. A topic name the core
 * refuses (over `maxTopicLength`, a lone surrogate) is the client's to fix, as in a subscribe:
 * it is answered as `invalid`, not thrown as the server's bug.
 */
function publishFrom(conn: Conn, topic: string, data: unknown): ErrorReply | undefined {
  if (conn.state !== 'open') return undefined
  const text = messageFrame(topic, data)
  try {
    conn.publish(topic, text)
  } catch (err) {
    if ((err instanceof RangeError || err instanceof TypeError) && /topic/i.test(err.message)) {
      return { code: 'invalid', message: err.message }
    }
    throw err
  }
  return undefined
}

/** Sends a frame; a connection that closed meanwhile has no one to tell. */
function send(conn: Conn, text: string): Promise<void> {
  const sent = conn.send(text)
  // No back-pressure: the shared settled promise, which the dispatch does not wait on.
  return sent === resolved ? sent : sent.catch(() => {})
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === 'function'
}

/** A schema's issues found after an await, told apart from a handler's output. */
class Invalid {
  constructor(readonly issues: ReadonlyArray<StandardSchemaV1.Issue>) {}
}

/** Closes a connection that broke the protocol. */
function refuse(conn: Conn, code: number, reason: string): Promise<void> {
  return conn.close(code, truncateReason(reason)).catch(() => {})
}

/**
 * How a hub's topics that keep history frame what their subscribers receive, for channel
 * clients: give it to `topics.useHistory({ history, frame: channelFrame })`. A channel message
 * gets its position (`{"type":"message",...,"position":{"epoch","offset"}}`), so that the client
 * resumes from it after a reconnect; a gap becomes a `gap` frame. Any other data (a raw
 * controller's, on the same hub) is sent as it is.
 * @param delivery - a message or a gap, as the topics give it
 * @returns the data sent to every subscriber of the topic
 */
export function channelFrame(delivery: Delivery): MessageData | undefined {
  if (delivery.type === 'gap') {
    const { topic, position, reason } = delivery
    return frame({ type: 'gap', topic, position, reason })
  }
  const { data, position } = delivery
  if (position && typeof data === 'string' && data.startsWith(MESSAGE_PREFIX)) {
    return withPosition(data, position)
  }
  return data
}

/** What a server's close tells a channel client about reconnecting. */
export interface RetryHint {
  /** `false`: the client must not reconnect (it shows the close as final). */
  readonly retry?: boolean
  /** The least time, in milliseconds, the client waits before it reconnects. */
  readonly retryAfter?: number
}

/**
 * Closes a channel connection with a hint for the client: a `close` frame
 * (`{"type":"close","retry":false}` or `{"type":"close","retryAfter":30000}`), then the close
 * frame itself. `@handshake/client` does not reconnect after `retry: false`, and waits at least
 * `retryAfter` ms before it does.
 * @param conn - the connection
 * @param code - the close code, as `conn.close()` takes it
 * @param reason - the close reason, at most 123 UTF-8 bytes
 * @param hint - whether, and when, the client may come back
 */
export async function closeChannel(
  conn: Conn,
  code: number,
  reason: string,
  hint: RetryHint,
): Promise<void> {
  if (hint.retryAfter !== undefined && !(hint.retryAfter >= 0)) {
    throw new RangeError(`retryAfter must be 0 or more milliseconds (it is ${hint.retryAfter})`)
  }
  await send(conn, frame({ type: 'close', ...hint }))
  await conn.close(code, reason)
}
