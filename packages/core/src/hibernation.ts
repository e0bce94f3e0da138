/**
 * Hibernation, runtime-free: an object that serves an app and holds sockets that stay open while
 * the runtime drops the isolate's memory (a Durable Object's Hibernation API). Each socket stores
 * the core's snapshot as its attachment; after a wake, every socket's `Conn` is rebuilt from it
 * before the first event or publish. The app's requests see the object as their adapter and hub.
 * An adapter maps its runtime's object, socket and events onto this.
 * @module
 */
import type { ExecutionContext, Hono } from 'hono'
import { answerClose, ReadyState } from './accepted-socket.js'
import { CHANNEL_PROTOCOL, PING, PONG } from './channels-protocol.js'
import { CloseCode, InternalErrorMessage } from './close.js'
import { Connections } from './connections.js'
import type { HistoryStore } from './history.js'
import { HUB, type Hub } from './hub.js'
import { HISTORY_STORE } from './internal.js'
import {
  ADAPTER,
  type Adapter,
  type ConnSnapshot,
  type RuntimeSocket,
  type SocketEvents,
  type UpgradeRequest,
} from './port.js'
import { assertAttachmentFits } from './serialized.js'
import { Topics } from './topics.js'
import { findUpgrader, type Upgrader } from './upgrade.js'

/** A socket of a hibernation API, as far as the core uses it. */
export interface HibernatableSocket {
  /** The WebSocket `readyState`: 1 while open. */
  readonly readyState: number
  /** Sends a message. */
  send(data: string | ArrayBuffer | ArrayBufferView): void
  /** Sends a close frame. */
  close(code?: number, reason?: string): void
  /** Stores a value with the socket, kept across hibernations. */
  serializeAttachment(value: unknown): void
  /** The value stored with the socket. */
  deserializeAttachment(): unknown
}

/** What the socket stores: the core's snapshot, marked as ours. */
interface Attachment extends ConnSnapshot {
  /** The format's version; an attachment without it was not written by Handshake. */
  readonly handshake: 1
  /**
   * The URL the object was asked for, when the route saw another one (a sub-app mounted with
   * `mount()` sees its own path): the wake looks the route up with it.
   */
  readonly objectUrl?: string
  /**
   * A channel socket's last message (ms since the epoch) as of the last write: it tells a stale
   * socket apart after a wake, when this incarnation has seen nothing from it yet.
   */
  readonly seen?: number
}

/** What the object knows of a channel socket's liveness in this incarnation. */
interface Liveness {
  /** Its last message this incarnation, or what its attachment said at the wake (ms). */
  seen: number
  /** The `seen` its attachment holds. */
  stored: number
}

/** A staleness bound that applies: a finite number of ms over 0. */
const isBound = (limit: number | undefined): limit is number =>
  limit !== undefined && limit > 0 && Number.isFinite(limit)

/** How many heartbeats a channel socket may miss before it is stale. */
const STALE_HEARTBEATS = 3

/** The most often the object looks for stale sockets, in ms. */
const SWEEP_INTERVAL_MS = 1000

function isAttachment(value: unknown): value is Attachment {
  return typeof value === 'object' && value !== null && (value as Attachment).handshake === 1
}

const describe = (err: unknown): string => (err instanceof Error ? err.message : String(err))

/** The env key that carries the URL of the request the object is serving. */
const OBJECT_URL = Symbol('handshake.objectUrl')

/** What {@link Hibernation} needs of the runtime's object that holds the sockets. */
export interface HibernationHost<W> {
  /** The adapter's name. */
  readonly name: string
  /** The app whose routes accept the sockets; undefined until the subclass has set it. */
  // biome-ignore lint/suspicious/noExplicitAny: any app, whatever its env and schema
  app(): Hono<any, any, any> | undefined
  /** The hub the connections belong to: the object. */
  readonly hub: Hub
  /** The object's bindings: the app's `c.env`, to which the object adds itself as adapter and hub. */
  bindings(): object
  /** Every socket the runtime still holds for the object. */
  sockets(): Iterable<W>
  /** Accepts a socket for hibernation: the socket, and the 101 that hands the client its end. */
  accept(request: UpgradeRequest): { socket: W; response: Response }
  /** The runtime's upgrade of a socket that does not hibernate (a `serve` controller's). */
  upgrade: Adapter['upgrade']
  /** Keeps the object's I/O going until `promise` settles (the app's `c.executionCtx`). */
  waitUntil(promise: Promise<unknown>): void
  /** The close code of a fault the runtime reported, when it names one. */
  faultCode(error: Error): number | undefined
  /**
   * Where the object's topics keep their history (`topics.useHistory()`), so that it outlives the
   * incarnation: its own storage. Called once per incarnation; undefined keeps it in memory.
   */
  history?(): HistoryStore | undefined
  /**
   * Asks the runtime to answer `request` with `response` itself, byte for byte, on every socket
   * of the object, without waking it (a Durable Object's `setWebSocketAutoResponse`). Called
   * when the object accepts or wakes a socket of the channel protocol, whose clients' heartbeat
   * ({@link PING}) it answers ({@link PONG}); the controller never sees those pings.
   */
  autoRespond?(request: string, response: string): void
  /** When the runtime last answered `ws` by itself (ms since the epoch); undefined if never. */
  autoResponded?(ws: W): number | undefined
  /**
   * The channel clients' heartbeat interval (ms). A channel socket that sends nothing, not even
   * a heartbeat, for three of them is stale: its connection ends as lost
   * (1006, its member leaves) the next time the object is awake. Undefined, 0 or less, NaN or
   * Infinity: never. Sockets of other protocols are never stale: their clients promise no
   * heartbeat.
   */
  heartbeatInterval?(): number | undefined
}

/**
 * The core's side of an object whose sockets hibernate, for this incarnation of the object: its
 * topics and connections, the app's requests (with the object as their adapter and hub), and the
 * `SocketEvents` of each socket, woken on first use. One per object; the object maps the
 * runtime's calls onto it.
 */
export class Hibernation<W extends HibernatableSocket> {
  readonly #host: HibernationHost<W>
  readonly #sockets = new WeakMap<W, SocketEvents>()
  readonly #upgraders = new Map<string, Upgrader | undefined>()
  readonly #topics = new Topics()
  readonly #connections = new Connections()
  // The channel sockets of this incarnation, with when each was last heard from.
  readonly #liveness = new Map<W, Liveness>()
  #autoResponding = false
  #swept = 0
  #waking = false
  #restored = false
  #env: object | undefined
  #executionCtx: ExecutionContext | undefined

  /** @param host - the object that holds the sockets */
  constructor(host: HibernationHost<W>) {
    this.#host = host
    this.#topics[HISTORY_STORE] = host.history?.()
  }

  /**
   * The object's topics. Their first use in an incarnation brings back every socket's
   * subscriptions, so that a publish from anywhere reaches every socket.
   */
  get topics(): Topics {
    this.restore()
    this.#sweep()
    return this.#topics
  }

  /** The object's open connections, the ones accepted before the last hibernation included. */
  get connections(): Connections {
    this.restore()
    this.#sweep()
    return this.#connections
  }

  /**
   * Once per incarnation, before anything else: rebuilds the `Conn` of every socket accepted
   * before the last hibernation, so that each is in its topics before the first event or
   * publish is dispatched. Nothing before the app is set (a use of topics in a constructor).
   */
  restore(): void {
    if (this.#restored || !this.#host.app()) return
    this.#restored = true
    // A woken connection joins its topics through the hub's: no sweep until all are back.
    this.#waking = true
    try {
      for (const ws of this.#host.sockets()) if (!this.#sockets.has(ws)) this.#wake(ws)
    } finally {
      this.#waking = false
    }
  }

  /**
   * Ends the connection of every channel socket that is stale (see
   * {@link HibernationHost.heartbeatInterval}): it gets a close frame (1001), its connection ends as
   * lost (1006: the app's `close` runs, it leaves its topics and presence) and the socket is
   * forgotten. Runs by itself when the object is awake anyway (a wake, an event, a request, a
   * use of its topics), at most once a second; the object sets no timer for it.
   * @param now - the time to judge by (ms since the epoch)
   * @returns how many connections it ended
   */
  expireStale(now: number = Date.now()): number {
    const limit = this.#staleAfter()
    if (!isBound(limit) || this.#liveness.size === 0) return 0
    let ended = 0
    for (const [ws, liveness] of [...this.#liveness]) {
      const last = Math.max(liveness.seen, this.#host.autoResponded?.(ws) ?? 0)
      if (now - last <= limit) continue
      ended++
      this.#expire(ws, `No message or heartbeat within ${limit} ms`)
    }
    return ended
  }

  /**
   * Serves a request with the app: an upgrade, or any route. The app gets an execution context
   * whose `waitUntil` is the object's, and the object as its adapter and hub (`getHub(c)`).
   */
  fetch(request: Request): Response | Promise<Response> {
    this.restore()
    this.#sweep()
    const env = Object.create(this.#appEnv(), { [OBJECT_URL]: { value: request.url } })
    const app = this.#host.app() as NonNullable<ReturnType<HibernationHost<W>['app']>>
    return app.fetch(request, env, this.#executionContext())
  }

  /** A message on a socket. */
  message(ws: W, message: string | ArrayBuffer): void {
    const events = this.#events(ws)
    this.#heard(ws)
    this.#sweep()
    events?.message(typeof message === 'string' ? message : new Uint8Array(message))
  }

  /**
   * A socket closed. A hibernation API does not answer a peer's close frame by itself: it is
   * answered once with the same code while the socket is still closing, and not at all once it
   * is closed (the peer answered ours).
   */
  closed(ws: W, code: number, reason: string, wasClean: boolean): void {
    if (ws.readyState !== ReadyState.Closed && code !== CloseCode.AbnormalClosure) {
      answerClose(ws, code, reason)
    }
    this.#events(ws)?.closed(code, reason, wasClean)
    this.#forget(ws)
    this.#sweep()
  }

  /** A socket failed: the connection ends as abnormal (1006). */
  failed(ws: W, error: unknown): void {
    const events = this.#events(ws)
    const err = error instanceof Error ? error : new Error(String(error))
    events?.error(err, this.#host.faultCode(err))
    events?.closed(CloseCode.AbnormalClosure, err.message, false)
    this.#forget(ws)
    this.#sweep()
  }

  /** How long a channel socket may send nothing before it is stale (ms), if it ever is. */
  #staleAfter(): number | undefined {
    const interval = this.#host.heartbeatInterval?.()
    return interval === undefined ? undefined : STALE_HEARTBEATS * interval
  }

  /** Looks for stale sockets, unless it did less than a second ago. */
  #sweep(): void {
    if (this.#waking || this.#liveness.size === 0) return
    const now = Date.now()
    if (now - this.#swept < SWEEP_INTERVAL_MS) return
    this.#swept = now
    this.expireStale(now)
  }

  /**
   * A channel socket's message: it is alive. Its attachment learns it at most three times per
   * staleness bound, so that a wake judges it by a time at most a third of the bound old.
   */
  #heard(ws: W): void {
    const liveness = this.#liveness.get(ws)
    if (!liveness) return
    const now = Date.now()
    liveness.seen = now
    const limit = this.#staleAfter()
    if (!isBound(limit) || now - liveness.stored < limit / 3) return
    try {
      const attachment = ws.deserializeAttachment()
      if (!isAttachment(attachment)) return
      ws.serializeAttachment({ ...attachment, seen: now })
      liveness.stored = now
    } catch {
      // Gone or refused: the next write of the connection's state carries the time.
    }
  }

  /** A channel socket of this incarnation: answers its heartbeat without waking the object. */
  #track(ws: W, seen: number, stored: number): void {
    this.#liveness.set(ws, { seen, stored })
    if (this.#autoResponding || !this.#host.autoRespond) return
    this.#autoResponding = true
    this.#host.autoRespond(PING, PONG)
  }

  /** Ends a stale socket's connection as lost, and forgets the socket. */
  #expire(ws: W, reason: string): void {
    const events = this.#sockets.get(ws)
    this.#forget(ws)
    try {
      ws.serializeAttachment(null)
    } catch {
      // Already gone.
    }
    try {
      if (ws.readyState === ReadyState.Open) ws.close(CloseCode.GoingAway, reason)
    } catch {
      // Closing or closed meanwhile: the close frame is not ours to send.
    }
    events?.closed(CloseCode.AbnormalClosure, reason, false)
  }

  #forget(ws: W): void {
    this.#sockets.delete(ws)
    this.#liveness.delete(ws)
  }

  /** The core's side of a socket, woken first if the object was rebuilt since it was accepted. */
  #events(ws: W): SocketEvents | undefined {
    this.restore()
    return this.#sockets.get(ws)
  }

  /** The env the app sees: the object's bindings, and the object as adapter and hub. */
  #appEnv(): object {
    if (!this.#env) {
      const host = this.#host
      const adapter: Adapter = {
        name: host.name,
        hub: () => host.hub,
        upgrade: (c, request) =>
          request.events
            ? this.#accept(request, (c.env as { [OBJECT_URL]?: string } | undefined)?.[OBJECT_URL])
            : host.upgrade(c, request),
      }
      this.#env = Object.create(host.bindings(), {
        [ADAPTER]: { value: adapter },
        [HUB]: { value: host.hub },
      })
    }
    return this.#env as object
  }

  /** The execution context of the app's requests: Hono's `c.executionCtx` throws without one. */
  #executionContext(): ExecutionContext {
    this.#executionCtx ??= {
      waitUntil: (promise) => this.#host.waitUntil(promise),
      passThroughOnException() {
        throw new Error(
          'passThroughOnException() has no origin to fall back to in a Durable Object: call it in the Worker, before toObject()',
        )
      },
      props: undefined,
    } as ExecutionContext
    return this.#executionCtx
  }

  /**
   * Opens the connection of a socket accepted for hibernation.
   * @param objectUrl - the URL the object was asked for, when the route saw another one
   */
  #accept(request: UpgradeRequest, objectUrl: string | undefined): Response {
    const { socket, response } = this.#host.accept(request)
    const routedAs = objectUrl === request.url ? undefined : objectUrl
    if (request.protocol === CHANNEL_PROTOCOL) {
      const now = Date.now()
      this.#track(socket, now, now)
    }
    this.#sockets.set(socket, request.open(this.#socket(socket, routedAs)))
    return response
  }

  #wake(ws: W): void {
    let attachment: unknown
    try {
      attachment = ws.deserializeAttachment()
    } catch {
      attachment = undefined
    }
    // A socket the app accepted itself: not ours to serve.
    if (!isAttachment(attachment)) return
    const { handshake: _, objectUrl, seen, ...snapshot } = attachment
    if (snapshot.protocol === CHANNEL_PROTOCOL) {
      // Written before this field existed: judged from the wake on.
      const at = seen ?? Date.now()
      this.#track(ws, at, at)
    }
    try {
      const upgrader = this.#upgraderFor(objectUrl ?? snapshot.url)
      this.#sockets.set(ws, upgrader.wake(this.#socket(ws, objectUrl), snapshot, this.#host.hub))
    } catch (err) {
      console.error('A hibernated WebSocket could not be woken:', err)
      this.#liveness.delete(ws)
      answerClose(ws, CloseCode.InternalError, InternalErrorMessage)
    }
  }

  /** The upgrader of the route that accepted `url`, found in the app however it is composed. */
  #upgraderFor(url: string): Upgrader {
    const path = new URL(url).pathname
    if (!this.#upgraders.has(path)) {
      const app = this.#host.app() as NonNullable<ReturnType<HibernationHost<W>['app']>>
      this.#upgraders.set(path, findUpgrader(app, url, this.#appEnv()))
    }
    const upgrader = this.#upgraders.get(path)
    if (!upgrader) {
      throw new Error(
        `No upgrade() handler of the app serves ${path} any more, so its sockets cannot wake: register the route with upgrade(controller), made once and not per request, and let no middleware answer or await before it`,
      )
    }
    return upgrader
  }

  /** A hibernatable socket, as the core sees it. */
  #socket(ws: W, objectUrl: string | undefined): RuntimeSocket {
    return {
      send(data) {
        // A socket that is closing cannot send; the core learns of the end from its event.
        if (ws.readyState === 1) ws.send(data)
      },
      close(code, reason) {
        ws.close(code, reason)
      },
      // A hibernation API reports no bufferedAmount, and cannot pause or ping.
      bufferedAmount: 0,
      emitsDrain: false,
      // The platform ends the handshake and reports it whenever that is: a timer of ours would
      // keep the object awake.
      closesHandshake: true,
      // Such a socket cannot be torn down. When the core gives up on one (a shutdown's
      // deadline), its connection has ended: the socket is forgotten, so that no later event
      // reaches it and no wake brings it back (its attachment is cleared). The TCP connection
      // stays until the peer or the platform ends it.
      terminate: () => {
        this.#forget(ws)
        try {
          ws.serializeAttachment(null)
        } catch {
          // Already gone: nothing left to forget.
        }
      },
      persist: (snapshot) => {
        const liveness = this.#liveness.get(ws)
        const attachment: Attachment = {
          handshake: 1,
          ...(objectUrl === undefined ? {} : { objectUrl }),
          ...(liveness ? { seen: liveness.seen } : {}),
          ...snapshot,
        }
        // Measured as the runtime measures it (its own serialization, not JSON), so that the
        // documented RangeError comes first; conn.data was measured on assignment.
        assertAttachmentFits(attachment)
        try {
          ws.serializeAttachment(attachment)
        } catch (err) {
          // A value V8 holds in a longer form than the count assumed (see serializedSize), or
          // one the runtime refuses: the same documented error, rather than the runtime's own.
          throw new RangeError(
            `The connection's state could not be stored with the socket (${describe(err)}): keep conn.data and the topics small and plain`,
          )
        }
        if (liveness) liveness.stored = liveness.seen
      },
    }
  }
}
