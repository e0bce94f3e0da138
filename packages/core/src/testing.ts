/**
 * The test kit: runs a controller against an in-memory peer, with no network, on any runtime.
 *
 * ```ts
 * import { connect } from '@handshake/core/testing'
 *
 * const peer = await connect(new Echo())
 * peer.send('hi')
 * expect(await peer.read()).toEqual({ type: 'text', data: 'hi' })
 * peer.close(1000)
 * expect(await peer.closed).toMatchObject({ code: 1000, wasClean: true })
 * ```
 * @module
 */
import { Hono } from 'hono'
import { CloseCode, type CloseError, closeErrorOf } from './close.js'
import type {
  AnyController,
  EventControllerWithHooks,
  HeadersLike,
  Message,
  MessageData,
  UpgradeOptions,
} from './contracts.js'
import { createHub, HUB, type Hub } from './hub.js'
import {
  ADAPTER,
  type Adapter,
  type ConnSnapshot,
  type RuntimeSocket,
  type SocketEvents,
} from './port.js'
import { assertAttachmentFits } from './serialized.js'
import type { TopicTree } from './topics.js'
import { Upgrader, upgrade } from './upgrade.js'

export { type MemoryBus, memoryBackplane } from './memory-backplane.js'

/**
 * The kit's hub: the topics and registry of every {@link connect} and {@link request} that names
 * no other, as one server's. To test a shutdown, give the test a hub of its own
 * (`connect(app, path, { hub: createHub() })`, `createHub` from `@handshake/core/adapter`):
 * a hub that has shut down accepts no more connections.
 */
export const hub: Hub = createHub()

/** A close frame: its code (1005 when it had none) and reason. */
export interface CloseFrame {
  readonly code: number
  readonly reason: string
}

/** How a connection ended, as the peer saw it, like a browser's `CloseEvent`. */
export interface CloseResult extends CloseFrame {
  /** True when both close frames were exchanged before the connection ended. */
  readonly wasClean: boolean
}

/** Options of {@link connect}. */
export interface ConnectOptions {
  /** Headers of the upgrade request, added to the valid handshake headers the kit sends. */
  headers?: HeadersLike
  /** Subprotocols the peer offers, sent in `Sec-WebSocket-Protocol`. */
  protocols?: readonly string[]
  /** A Hono `env` for the request (bindings); the kit adds its adapter and hub to it. */
  env?: object
  /**
   * Whether the peer answers the server's close frame; false acts as a peer that never answers.
   * Set it here when `serve` may close at once; later, set {@link TestPeer.answerClose}.
   * @defaultValue true
   */
  answerClose?: boolean
  /**
   * Whether the in-memory runtime reports the connection's end inside the server's `close()`
   * call, as Bun does: it writes the close frame, ends the connection at once (the server sees
   * the code it sent, not clean) and reads no answer. Use it to check that a controller's
   * handlers still never overlap there.
   * @defaultValue false
   */
  endsInClose?: boolean
  /**
   * Options of the upgrader, when `target` is a bare controller (an app has its own).
   * @defaultValue the defaults of {@link UpgradeOptions}
   */
  upgrade?: UpgradeOptions
  /**
   * The hub the connection belongs to: `getHub(c)` and `conn.hub` in the app are this hub.
   * Give a test a hub of its own to test a shutdown (`await hub.connections.shutdown()`), or
   * topics that no other test sees.
   * @defaultValue the kit's {@link hub}
   */
  hub?: Hub
  /**
   * A runtime topic tree the connection's socket belongs to, as a Bun server's: the core fans
   * topics out through it (one `tree.publish` per message) instead of sending to each
   * subscriber. Give the peers of one server the same {@link TestTree}.
   */
  tree?: TestTree
}

/**
 * A runtime's own topic tree, in memory, as a Bun server's: a socket subscribes in it,
 * `tree.publish` reaches every subscribed socket, and a socket's own publish reaches every one
 * but the sender, only when the sender is subscribed. Pass it to {@link connect} (`{ tree }`).
 */
export class TestTree implements TopicTree {
  /** The sockets subscribed to each topic. */
  readonly subscribed: Map<string, Set<RuntimeSocket>> = new Map()
  /** How many times the core published through the tree (rather than to each socket). */
  publishes = 0
  /** @internal The sockets' own send, by socket. */
  readonly sends: Map<RuntimeSocket, (data: MessageData) => void> = new Map()

  publish(topic: string, data: MessageData): void {
    this.publishes++
    for (const socket of this.subscribed.get(topic) ?? []) this.sends.get(socket)?.(data)
  }

  /** @internal Gives a socket the tree's calls. */
  attach(socket: RuntimeSocket & { tree?: TopicTree }): void {
    const send = socket.send.bind(socket)
    this.sends.set(socket, (data) => void send(data))
    Object.assign(socket, {
      tree: this,
      subscribe: (topic: string) => {
        const set = this.subscribed.get(topic) ?? new Set()
        this.subscribed.set(topic, set)
        set.add(socket)
      },
      unsubscribe: (topic: string) => {
        this.subscribed.get(topic)?.delete(socket)
      },
      publish: (topic: string, data: MessageData) => {
        const set = this.subscribed.get(topic)
        if (!set?.has(socket)) return
        this.publishes++
        for (const other of set) if (other !== socket) this.sends.get(other)?.(data)
      },
    })
  }

  /** @internal The socket ended: it leaves every topic, as a runtime's does. */
  detach(socket: RuntimeSocket): void {
    this.sends.delete(socket)
    for (const set of this.subscribed.values()) set.delete(socket)
  }
}

/** Thrown by {@link connect} when the server refuses the upgrade. */
export class UpgradeRejectedError extends Error {
  override readonly name = 'UpgradeRejectedError'
  /** @param response - the whole rejection: status, headers and body */
  constructor(readonly response: Response) {
    super(`The server refused the upgrade with ${response.status}`)
  }
}

const byteLength = (data: MessageData) =>
  typeof data === 'string' ? new TextEncoder().encode(data).byteLength : data.byteLength

/**
 * The peer's end of an in-memory connection. It behaves like a well-behaved client (it answers
 * the server's close frame and pings) unless told to misbehave.
 */
export class TestPeer {
  /**
   * The 101 response as the app finished it: the `upgradeHeaders`, `Sec-WebSocket-Protocol`,
   * and whatever headers middleware added.
   */
  response: Response
  /** The subprotocol the server chose, or `''`. */
  readonly protocol: string
  /**
   * The first close frame the server sent. It never settles when the connection ends without
   * one (a teardown, a vanished peer): race it with {@link TestPeer.closed}.
   */
  readonly closeFrame: Promise<CloseFrame>
  /**
   * Every close frame the server sent, in order, whether the core wrote it or the runtime
   * answered the peer's close by itself: a correct server sends exactly one.
   */
  readonly closeFrames: CloseFrame[] = []
  /** How the connection ended, from the peer's side. */
  readonly closed: Promise<CloseResult>
  /**
   * Whether the peer answers the server's close frame. Set it to false to act as a peer that
   * never answers, so the server's close-handshake timeout runs out.
   */
  answerClose = true
  /** How many pings the server sent. The peer answers each with a pong. */
  pings = 0
  /** True once the server tore the connection down without finishing the handshake. */
  terminated = false
  /** See {@link ConnectOptions.endsInClose}. */
  endsInClose = false

  #server: SocketEvents | undefined
  #inbox: Message[] = []
  #reader: { resolve(message: Message): void; reject(err: unknown): void } | undefined
  #inFlight: { data: MessageData; size: number }[] = []
  #inFlightBytes = 0
  #reading = true
  // What the peer sent while the server had paused reading: messages, then maybe its close
  // frame, which a real network also holds behind the unread data.
  #outbox: (MessageData | CloseFrame)[] = []
  #serverPaused = false
  #sentClose: CloseFrame | undefined
  #receivedClose: CloseFrame | undefined
  #ended: CloseResult | undefined
  #settleCloseFrame!: (frame: CloseFrame) => void
  #settleClosed!: (result: CloseResult) => void

  #persisted: ConnSnapshot | undefined
  readonly #hibernating: boolean
  // Cut: nothing goes through any more.
  #severed = false

  /** @internal Made by {@link connect}. */
  constructor(response: Response, protocol: string, hibernating = false) {
    this.response = response
    this.protocol = protocol
    this.#hibernating = hibernating
    this.socket = this.#serverSocket()
    this.closeFrame = new Promise((resolve) => {
      this.#settleCloseFrame = resolve
    })
    this.closed = new Promise((resolve) => {
      this.#settleClosed = resolve
    })
  }

  /**
   * Sends a message to the server. Like a network, it arrives after the current call stack, and
   * is held, in order, while the server has paused reading.
   */
  send(data: MessageData): void {
    if (this.#sentClose || this.#ended) throw new Error('The peer has closed: it cannot send')
    if (this.#severed) return
    this.#enqueue(data)
  }

  /** Bytes the peer could not deliver yet because the server paused reading. */
  get pendingBytes(): number {
    return this.#outbox.reduce((sum, item) => sum + (isFrame(item) ? 0 : byteLength(item)), 0)
  }

  /**
   * The next message from the server. Once the connection has ended and every message was read,
   * it rejects with a {@link CloseError} holding the close frame the server sent. Only one read
   * may be pending at a time; a second one rejects with an `Error`.
   */
  read(): Promise<Message> {
    if (this.#reader) {
      return Promise.reject(
        new Error('Only one peer.read() may be pending at a time: await the previous one first'),
      )
    }
    const message = this.#inbox.shift()
    if (message) return Promise.resolve(message)
    if (this.#ended) return Promise.reject(this.#endError())
    return new Promise((resolve, reject) => {
      this.#reader = { resolve, reject }
    })
  }

  /**
   * Starts the close handshake from the peer's side. The in-memory runtime answers it with the
   * same code, as `ws`, Bun and Deno do. Without `code`, the frame has no code (the server sees
   * 1005). While the server has paused reading, the frame waits behind the unread messages, as
   * on a real network.
   */
  close(code?: number, reason = ''): void {
    if (this.#sentClose || this.#ended) return
    this.#sentClose = { code: code ?? CloseCode.NoStatusReceived, reason }
    this.#enqueue(this.#sentClose)
  }

  /**
   * The object holding this connection is evicted from memory (a Durable Object hibernating):
   * only for peers of {@link hibernatable}. See {@link HibernatableObject.evict}.
   */
  get persisted(): ConnSnapshot | undefined {
    return this.#persisted === undefined ? undefined : structuredClone(this.#persisted)
  }

  #receivePeerClose(frame: CloseFrame): void {
    if (this.#ended) return
    // The runtime answers a peer's close frame at once, then reports the end.
    this.#runtimeAnswers(frame)
    this.#end(frame, true)
  }

  /** The peer disappears: no close frame, the connection just ends (the server sees 1006). */
  vanish(): void {
    this.#deliver(() => this.#end({ code: CloseCode.AbnormalClosure, reason: '' }, false))
  }

  /**
   * The connection is cut, as a network that fails: from now on nothing reaches either side.
   * What the server sends is lost, as is what it had sent that the peer had not read in yet
   * ({@link TestPeer.stopReading}) and what the peer sent that the server had not read. The
   * peer keeps the messages it had received; then its reads reject with 1006. The server sees
   * the connection end with 1006, without a close frame, once the current call stack is done.
   */
  cut(): void {
    if (this.#ended || this.#severed) return
    this.#severed = true
    this.#inFlight = []
    this.#inFlightBytes = 0
    this.#outbox = []
    this.#deliver(() => this.#end({ code: CloseCode.AbnormalClosure, reason: '' }, false))
  }

  /**
   * The runtime reports a protocol fault of this peer (1002 for a protocol error, 1007 for
   * invalid UTF-8), answers it with a close frame of that code, and the connection ends.
   */
  fault(code: number, message: string): void {
    this.#deliver(() => {
      if (this.#ended) return
      this.#server?.error(new Error(message), code)
      this.#runtimeAnswers({ code, reason: message })
      this.#end({ code: CloseCode.AbnormalClosure, reason: '' }, false)
    })
  }

  /** Stops taking the server's messages: they stay in flight and count in its `bufferedAmount`. */
  stopReading(): void {
    this.#reading = false
  }

  /** Takes the in-flight messages and lets the server's buffer drain. */
  startReading(): void {
    this.#reading = true
    const messages = this.#inFlight
    this.#inFlight = []
    this.#inFlightBytes = 0
    for (const { data } of messages) this.#take(data)
    this.#deliver(() => this.#server?.drain())
  }

  // --- the server's side, driven by the in-memory socket ---

  /** @internal */
  attach(events: SocketEvents): void {
    this.#server = events
  }

  /** @internal The server's end of the connection. */
  readonly socket: RuntimeSocket

  #serverSocket(): RuntimeSocket {
    const peer = this
    const socket: RuntimeSocket & { persist?: (snapshot: ConnSnapshot) => void } = {
      emitsDrain: true,
      send: (data) => {
        if (this.#ended || this.#receivedClose || this.#severed) return
        // Copy, like a network would: the sender may reuse its buffer.
        const copy = typeof data === 'string' ? data : data.slice()
        if (this.#reading) this.#take(copy)
        else {
          const size = byteLength(copy)
          this.#inFlight.push({ data: copy, size })
          this.#inFlightBytes += size
        }
      },
      get bufferedAmount() {
        return peer.#inFlightBytes
      },
      close: (code, reason) => {
        if (this.#ended) return
        this.closeFrames.push({ code, reason })
        if (this.#receivedClose) return
        this.#receiveClose({ code, reason })
        if (this.endsInClose) {
          // As Bun: the frame and a FIN are written, and the end is reported at once, inside
          // this call, with the code the server sent.
          this.#end({ code, reason }, false)
          return
        }
        if (!this.answerClose || this.#sentClose) return
        // The answer travels behind whatever the peer sent before it, which the server may
        // have paused reading.
        this.#sentClose = { code, reason }
        this.#enqueue(this.#sentClose)
      },
      terminate: () => {
        if (this.#ended) return
        this.terminated = true
        this.#end({ code: CloseCode.AbnormalClosure, reason: '' }, false)
      },
      pause: () => {
        this.#serverPaused = true
      },
      resume: () => {
        this.#serverPaused = false
        this.#deliver(() => this.#flushOutbox())
      },
      ping: () => {
        this.pings++
        this.#deliver(() => this.#server?.pong())
      },
    }
    if (this.#hibernating) {
      // As a Durable Object's socket: the state is stored as a structured clone, within the
      // budget workerd applies to an attachment as @handshake/workers stores it; the runtime
      // finishes the close handshake itself, and there is no ping, pause or terminate.
      Object.assign(socket, {
        closesHandshake: true,
        persist: (snapshot: ConnSnapshot) => {
          const attachment = { handshake: 1, ...snapshot }
          assertAttachmentFits(attachment)
          this.#persisted = structuredClone(snapshot)
        },
      })
      delete socket.ping
      delete socket.pause
      delete socket.resume
      // As @handshake/workers: the TCP connection cannot be torn down, so a socket the core
      // gives up on is forgotten instead, and no later wake brings its connection back.
      socket.terminate = () => {
        this.#persisted = undefined
      }
    }
    return socket
  }

  /** Queues what the peer sends; it is delivered in order, and only while the server reads. */
  #enqueue(item: MessageData | CloseFrame): void {
    this.#outbox.push(item)
    if (this.#outbox.length === 1) this.#deliver(() => this.#flushOutbox())
  }

  /** Delivers held messages one at a time, stopping as soon as the server pauses again. */
  #flushOutbox(): void {
    while (!this.#serverPaused && !this.#ended && this.#outbox.length > 0) {
      const item = this.#outbox.shift() as MessageData | CloseFrame
      if (isFrame(item)) this.#receivePeerClose(item)
      else this.#server?.message(item)
    }
  }

  #take(data: MessageData): void {
    const message: Message =
      typeof data === 'string' ? { type: 'text', data } : { type: 'binary', data }
    const reader = this.#reader
    if (reader) {
      this.#reader = undefined
      reader.resolve(message)
    } else {
      this.#inbox.push(message)
    }
  }

  /** The server's runtime writes a close frame by itself (an answer, or a fault's close). */
  #runtimeAnswers(frame: CloseFrame): void {
    // Like ws: a runtime that already sent its close frame sends no second one.
    if (this.#receivedClose) return
    this.closeFrames.push(frame)
    this.#receiveClose(frame)
  }

  #receiveClose(frame: CloseFrame): void {
    if (this.#receivedClose) return
    this.#receivedClose = frame
    this.#settleCloseFrame(frame)
  }

  /** Ends the connection on both sides: the server hears `serverSees`, the peer keeps its view. */
  #end(serverSees: CloseFrame, clean: boolean): void {
    if (this.#ended) return
    this.tree?.detach(this.socket)
    const received = this.#receivedClose
    this.#ended = {
      code: received?.code ?? CloseCode.AbnormalClosure,
      reason: received?.reason ?? '',
      wasClean: clean && received !== undefined,
    }
    this.#settleClosed(this.#ended)
    const reader = this.#reader
    this.#reader = undefined
    reader?.reject(this.#endError())
    // The server saw a close frame only when the peer sent one.
    this.#server?.closed(serverSees.code, serverSees.reason, clean)
  }

  #endError(): CloseError {
    const { code, reason, wasClean } = this.#ended as CloseResult
    return closeErrorOf(code, reason, wasClean)
  }

  /** Delivers in order, after the current call stack, as a network would. */
  #deliver(action: () => void): void {
    queueMicrotask(() => {
      if (!this.#ended) this.beforeEvent?.()
      action()
    })
  }

  /** @internal Runs before each event reaches the server (the eviction of {@link hibernatable}). */
  beforeEvent: (() => void) | undefined
  /** @internal The runtime tree its socket belongs to. */
  tree: TestTree | undefined
}

function isFrame(item: MessageData | CloseFrame): item is CloseFrame {
  return typeof item === 'object' && !(item instanceof Uint8Array)
}

function isController(target: object): target is AnyController {
  return (
    typeof (target as { serve?: unknown }).serve === 'function' ||
    typeof (target as { message?: unknown }).message === 'function'
  )
}

const HANDSHAKE = {
  Upgrade: 'websocket',
  Connection: 'Upgrade',
  'Sec-WebSocket-Version': '13',
  'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
  Host: 'localhost',
}

function requestHeaders(options: ConnectOptions): Headers {
  const headers = new Headers(HANDSHAKE)
  for (const [name, value] of new Headers(options.headers)) headers.set(name, value)
  if (options.protocols?.length) headers.set('Sec-WebSocket-Protocol', options.protocols.join(', '))
  return headers
}

/** What the client would see: the app's final headers on a 101. */
function switched(response: Response): Response {
  const answer = new Response(null, { headers: response.headers })
  Object.defineProperty(answer, 'status', { value: 101 })
  Object.defineProperty(answer, 'statusText', { value: 'Switching Protocols' })
  return answer
}

/**
 * The in-memory adapter for one upgrade request. Like Node, it opens the socket only once the
 * app has answered, and only when the answer is the upgrade's: a response rewritten by
 * middleware (a 500 after the handler) leaves no connection behind.
 */
function memoryAdapter(
  options: ConnectOptions,
  own: Hub,
  hibernating: boolean,
): { adapter: Adapter; finish(response: Response): TestPeer | undefined } {
  let accepted:
    | { open(socket: RuntimeSocket): SocketEvents; abandon(): void; protocol?: string }
    | undefined
  const adapter: Adapter = {
    name: 'memory',
    hub: () => own,
    upgrade(_c, request) {
      if (accepted) throw new Error('upgrade() ran twice for one request')
      accepted = request
      const responseHeaders = new Headers(request.headers)
      if (request.protocol) responseHeaders.set('Sec-WebSocket-Protocol', request.protocol)
      // Response() refuses status 101 outside a server runtime, and middleware may copy the
      // response: the app sees a 200 carrying the 101's headers, as on Node.
      return new Response(null, { status: 200, headers: responseHeaders })
    },
  }
  return {
    adapter,
    finish(response) {
      if (!accepted) return undefined
      if (response.status !== 200) {
        // The app answered something else (middleware rewrote it): this socket never opens.
        accepted.abandon()
        return undefined
      }
      const peer = new TestPeer(switched(response), accepted.protocol ?? '', hibernating)
      if (options.tree) {
        peer.tree = options.tree
        options.tree.attach(peer.socket)
      }
      peer.answerClose = options.answerClose ?? true
      peer.endsInClose = options.endsInClose ?? false
      peer.attach(accepted.open(peer.socket))
      return peer
    },
  }
}

/**
 * Opens an in-memory connection to a Hono app (at `path`) or to a bare controller (mounted on
 * `path` of a new app), through the whole upgrade pipeline: validation, origin check, hooks and
 * subprotocol choice all run as they would on a server.
 *
 * @param target - a Hono app that routes `path` to `upgrade()`, or a controller of either kind
 * @param path - the request path, `/` by default
 * @param options - headers, subprotocols and env of the upgrade request, upgrader options
 * @returns the peer, once the server has answered 101 and the connection is open
 * @throws UpgradeRejectedError when the server answers anything else, with that response
 */
export async function connect(
  target: { request: Hono['request'] } | AnyController,
  path = '/',
  options: ConnectOptions = {},
): Promise<TestPeer> {
  const app: { request: Hono['request'] } = isController(target)
    ? new Hono().get(path, upgrade(target, options.upgrade))
    : target
  const own = options.hub ?? hub
  const memory = memoryAdapter(options, own, false)
  const response = await app.request(
    `http://localhost${path}`,
    { headers: requestHeaders(options) },
    { ...options.env, [ADAPTER]: memory.adapter, [HUB]: own },
  )
  const peer = memory.finish(response)
  if (!peer) throw new UpgradeRejectedError(response)
  return peer
}

/** Options of {@link request}. */
export interface RequestOptions {
  /** The hub of the request: what `getHub(c)` returns. @defaultValue the kit's {@link hub} */
  hub?: Hub
  /** A Hono `env` for the request (bindings); the kit adds the hub to it. */
  env?: object
}

/**
 * Sends an HTTP request to an app as the kit's server would, so that `getHub(c)` in its routes
 * reaches the kit's hub, where the peers of {@link connect} are: a publish from a route reaches
 * them.
 *
 * @example
 * ```ts
 * const peer = await connect(app, '/rooms/lobby')
 * await request(app, '/rooms/lobby', { method: 'POST', body: 'hello' })
 * expect(await peer.read()).toEqual({ type: 'text', data: 'hello' })
 * ```
 * @param app - the Hono app
 * @param path - the request path, query included
 * @param init - the request's method, headers and body
 * @param options - its hub and env
 */
export async function request(
  app: { request: Hono['request'] },
  path: string,
  init?: RequestInit,
  options: RequestOptions = {},
): Promise<Response> {
  return app.request(`http://localhost${path}`, init, {
    ...options.env,
    [HUB]: options.hub ?? hub,
  })
}

/** Options of {@link hibernatable}. */
export interface HibernatableOptions {
  /** The request path of a connection, unless its `connect()` gives one. @defaultValue '/' */
  path?: string
  /**
   * The route the controller is mounted on, with its parameters (`/ws/:room`), for controllers
   * that read `c.req.param()` in `open`.
   * @defaultValue the path
   */
  route?: string
  /** Options of the upgrader. */
  upgrade?: UpgradeOptions
  /**
   * Evict before every event the server receives, so that any state kept outside `conn.data`
   * is lost at once, as it may be on the platform.
   * @defaultValue false
   */
  evictEveryEvent?: boolean
}

/**
 * Options of {@link HibernatableObject.connect}: the upgrade request and how the peer behaves.
 * The upgrader's options and the hub belong to the object: pass them to
 * {@link hibernatable} (`upgrade`); the object is its own hub.
 */
export interface HibernatableConnectOptions
  extends Pick<ConnectOptions, 'headers' | 'protocols' | 'env' | 'answerClose'> {
  /**
   * This connection's request path, query included (`/ws/lobby?name=alice`): the sockets of one
   * object may each have their own.
   * @defaultValue the object's `path`
   */
  path?: string
}

/**
 * An in-memory Durable Object for an event controller: see {@link hibernatable}. It is its own
 * hub, as a Durable Object is.
 */
export interface HibernatableObject extends Hub {
  /**
   * Connects a peer to the object, through the whole upgrade pipeline, as {@link connect}
   * does: `room.connect('/ws/lobby?name=alice', { headers })`.
   * @param path - this connection's request path, query included; the object's `path` by
   *   default
   * @param options - headers, subprotocols and env of the upgrade request, `answerClose`
   * @returns the peer, once the object has answered 101 and the connection is open
   * @throws UpgradeRejectedError when the object answers anything else, with that response
   */
  connect(path?: string, options?: Omit<HibernatableConnectOptions, 'path'>): Promise<TestPeer>
  /**
   * Connects a peer to the object, with the path in the options:
   * `room.connect({ path: '/ws/lobby', headers })`.
   */
  connect(options?: HibernatableConnectOptions): Promise<TestPeer>
  /**
   * Drops all of the object's memory, as a hibernation does: the controller is made again by
   * the factory, the topics are new, and each open connection's `Conn` is rebuilt from what it
   * stored (`conn.data` and its topics). The sockets stay open.
   */
  evict(): void
  /** How many times the object was evicted. */
  readonly evictions: number
  /** The object's topics (new after each eviction), for a publish from outside a connection. */
  readonly topics: Hub['topics']
  /** The object's open connections. */
  readonly connections: Hub['connections']
}

/**
 * An in-memory Durable Object that hibernates: it serves an event controller made by `factory`,
 * and {@link HibernatableObject.evict} drops all its memory between two events, on any runtime.
 * A controller that keeps state in its own fields instead of `conn.data` then fails its test.
 *
 * @example
 * ```ts
 * const room = hibernatable(() => new Room())
 * const peer = await room.connect()
 * peer.send('join alice')
 * room.evict()
 * peer.send('who')
 * expect(await peer.read()).toEqual({ type: 'text', data: 'alice' })
 * ```
 */
export function hibernatable(
  factory: () => EventControllerWithHooks,
  options: HibernatableOptions = {},
): HibernatableObject {
  const path = options.path ?? '/'
  const peers = new Set<TestPeer>()
  let evictions = 0
  let state = build()

  function build() {
    const own = createHub()
    const upgrader = new Upgrader(factory(), options.upgrade)
    const app = new Hono().get(options.route ?? path, upgrader.handler())
    return { hub: own, upgrader, app }
  }

  const object: HibernatableObject = {
    async connect(
      pathOrOptions?: string | HibernatableConnectOptions,
      peerOptions: Omit<HibernatableConnectOptions, 'path'> = {},
    ) {
      const connectOptions: HibernatableConnectOptions & ConnectOptions =
        typeof pathOrOptions === 'string'
          ? { ...peerOptions, path: pathOrOptions }
          : (pathOrOptions ?? {})
      if (typeof connectOptions !== 'object' || connectOptions === null) {
        throw new TypeError(
          `connect() takes a path string and options, or options alone; it got ${typeof pathOrOptions}`,
        )
      }
      for (const key of ['upgrade', 'hub'] as const) {
        if (connectOptions[key] !== undefined) {
          throw new TypeError(
            `connect() of a hibernatable object takes no \`${key}\` option: the object has its own; pass upgrader options to hibernatable(factory, { upgrade })`,
          )
        }
      }
      const memory = memoryAdapter(connectOptions, state.hub, true)
      const response = await state.app.request(
        `http://localhost${connectOptions.path ?? path}`,
        { headers: requestHeaders(connectOptions) },
        { ...connectOptions.env, [ADAPTER]: memory.adapter, [HUB]: state.hub },
      )
      const peer = memory.finish(response)
      if (!peer) throw new UpgradeRejectedError(response)
      peers.add(peer)
      void peer.closed.then(() => peers.delete(peer))
      if (options.evictEveryEvent) peer.beforeEvent = () => object.evict()
      return peer
    },
    evict() {
      evictions++
      state = build()
      for (const peer of peers) {
        // Every connection stores its snapshot as it opens: none means the core gave it up.
        const snapshot = peer.persisted
        if (snapshot === undefined) peers.delete(peer)
        else peer.attach(state.upgrader.wake(peer.socket, snapshot, state.hub))
      }
    },
    get evictions() {
      return evictions
    },
    get topics() {
      return state.hub.topics
    },
    get connections() {
      return state.hub.connections
    },
  }
  return object
}
