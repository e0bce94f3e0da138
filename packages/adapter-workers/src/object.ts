/**
 * `HandshakeObject`: a Durable Object class that serves a Hono app, whose event controllers'
 * sockets hibernate (the WebSocket Hibernation API), and {@link toObject}, which reaches one from
 * the Worker. The runtime-free part is the core's `Hibernation`; this maps workerd's API onto it.
 * @module
 */
import { DurableObject } from 'cloudflare:workers'
import type { DurableObjectState, WebSocketRequestResponsePair } from '@cloudflare/workers-types'
import type { Connections, Hub, MessageData, ShutdownOptions, Topics } from '@handshake/core'
import { type HibernatableSocket, Hibernation, StoredHistory } from '@handshake/core/adapter'
import type { Hono } from 'hono'
import { adapter } from './index.js'
import { faultCode, switching, webSocketPair, workerdGlobal } from './shared.js'

/**
 * What {@link toObject} needs of a Durable Object namespace binding (`env.ROOMS`). Loose on
 * purpose: the binding's `Request` and `Response` types (workers-types') are not the DOM's.
 */
export interface ObjectNamespace {
  idFromName(name: string): unknown
  get(id: never): { fetch(request: never): Promise<unknown> }
}

/**
 * A Durable Object that serves a Hono app. Extend it, give it the app, bind it in
 * `wrangler.jsonc`, and route requests to it with {@link toObject}:
 *
 * ```ts
 * export class Room extends HandshakeObject<Env> {
 *   app = app
 * }
 * ```
 *
 * An event controller's sockets are accepted through the Hibernation API: while no message
 * arrives, the platform may drop the object from memory and keep its sockets open, billing no
 * duration. The next event builds the object again, and every connection comes back from its
 * socket's attachment: `conn.data`, its topics, URL and protocol (`open` does not run again; the
 * upgrade request's headers are gone). Nothing of Handshake keeps the object awake, and the
 * channel clients' heartbeats do not wake it: workerd answers them (see
 * {@link HandshakeObject.heartbeatInterval}). A `serve`
 * controller's socket is accepted as in a plain Worker: the object stays in memory while it runs.
 *
 * The object is a hub of its own: `getHub(c)` in its app's routes, and `conn.hub`. A publish
 * reaches every socket of this object and no other's, and {@link HandshakeObject.shutdown}
 * closes this object's sockets only. See the README's "Durable Objects that hibernate".
 *
 * A subclass that overrides `fetch`, `webSocketMessage`, `webSocketClose`, `webSocketError`,
 * `publish` or `shutdown` must call `super`'s.
 */
export abstract class HandshakeObject<Env = unknown> extends DurableObject<Env> implements Hub {
  /** The app the object serves: the same Hono app as on the other runtimes, or its own. */
  // biome-ignore lint/suspicious/noExplicitAny: any app, whatever its env and schema
  abstract readonly app: Hono<any, any, any>
  // The app's requests, and the core's side of each hibernatable socket, for this incarnation.
  readonly #sockets = new Hibernation<HibernatableSocket>({
    name: 'workers',
    hub: this,
    app: () => this.app,
    bindings: () => this.env as object,
    sockets: () => this.ctx.getWebSockets() as unknown as HibernatableSocket[],
    accept: (request) => {
      const { 0: client, 1: server } = webSocketPair()
      this.ctx.acceptWebSocket(server as never)
      return {
        socket: server as unknown as HibernatableSocket,
        response: switching(client, request),
      }
    },
    upgrade: adapter.upgrade,
    waitUntil: (promise) => this.ctx.waitUntil(promise),
    faultCode,
    // A SQLite-backed object's synchronous storage; an object on the older key-value storage
    // (whose `sql` throws) has none, and keeps its history in memory.
    history: () => (hasSql(this.ctx) ? new StoredHistory(this.ctx.storage.kv) : undefined),
    // workerd answers the channel clients' heartbeat itself, even while the object hibernates,
    // and remembers when it last did for each socket.
    autoRespond: (request, response) => {
      const Pair = workerdGlobal<typeof WebSocketRequestResponsePair>(
        'WebSocketRequestResponsePair',
      )
      this.ctx.setWebSocketAutoResponse(new Pair(request, response))
    },
    autoResponded: (ws) =>
      this.ctx.getWebSocketAutoResponseTimestamp(ws as never)?.getTime() ?? undefined,
    heartbeatInterval: () => this.heartbeatInterval,
  })

  /**
   * The channel clients' `heartbeatInterval` (ms; `@handshake/client`'s default, 20 s). A
   * channel socket that sends nothing, not even a heartbeat, for three times this long is stale:
   * the next time the object is awake anyway (a message, a request, a use of its topics), its
   * connection ends as lost (1006; `close` runs, the member leaves its topics' presence) and the
   * socket gets a close frame (1001). `Infinity` (or 0) keeps every socket. Set it to what the clients
   * use: `override heartbeatInterval = 5000`.
   */
  heartbeatInterval: number = 20_000

  /**
   * Declared so that the public types name `DurableObjectState` from `@cloudflare/workers-types`,
   * whose `cloudflare:workers` module JSR's type check needs to see `extends DurableObject`.
   * @param ctx - the object's state, from workerd
   * @param env - the object's bindings
   */
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env)
  }

  /**
   * This object's topics: `conn.subscribe()` and `conn.publish()` of its connections. After a
   * hibernation, its first use brings back every socket's subscriptions, so a publish from an
   * `alarm()` or an RPC method reaches every socket.
   */
  get topics(): Topics {
    return this.#sockets.topics
  }

  /** This object's open connections, the ones accepted before the last hibernation included. */
  get connections(): Connections {
    return this.#sockets.connections
  }

  /**
   * Serves a request with the app: an upgrade to one of its WebSocket routes, or any HTTP
   * route of the app. The app's routes get an execution context (`c.executionCtx`) whose
   * `waitUntil` is the object's, and `getHub(c)` is this object.
   */
  override fetch(request: Request): Response | Promise<Response> {
    return this.#sockets.fetch(request)
  }

  /** A message on a hibernatable socket: handed to its controller's `message`. */
  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): void {
    this.#sockets.message(ws as never, message)
  }

  /** A hibernatable socket closed: a peer's close frame is answered once, with its code. */
  override webSocketClose(ws: WebSocket, code: number, reason: string, wasClean: boolean): void {
    this.#sockets.closed(ws as never, code, reason, wasClean)
  }

  /** A hibernatable socket failed: the connection ends as abnormal (1006). */
  override webSocketError(ws: WebSocket, error: unknown): void {
    this.#sockets.failed(ws as never, error)
  }

  /**
   * Publishes to every subscriber of `topic` in this object, including the sockets accepted
   * before the last hibernation. Call it over RPC from the Worker:
   * `await env.ROOMS.get(env.ROOMS.idFromName('lobby')).publish('lobby', 'hello')`.
   * @param topic - the topic
   * @param data - a string (text) or bytes (binary)
   */
  publish(topic: string, data: MessageData): void {
    this.topics.publish(topic, data)
  }

  /**
   * Closes this object's sockets gracefully (`Connections.shutdown` of its own registry): each
   * gets one close frame (1001 `Server shutting down` by default), and the object answers its
   * new upgrades with 503 from then on. Other objects and the Worker keep serving. Callable
   * over RPC from the Worker.
   * @param options - see `ShutdownOptions`
   */
  shutdown(options?: ShutdownOptions): Promise<void> {
    return this.connections.shutdown(options)
  }
}

/** True for a SQLite-backed object (`new_sqlite_classes`): its storage has `sql` and `kv`. */
function hasSql(ctx: DurableObjectState): boolean {
  try {
    return ctx.storage.sql.databaseSize >= 0
  } catch {
    return false
  }
}

// --- reaching an object from the Worker ---

/**
 * Sends a request to the Durable Object named `name`: a WebSocket upgrade for one of its
 * routes, or any HTTP route of its app. One call per route of the Worker:
 *
 * ```ts
 * app.get('/rooms/:room', (c) => toObject(c.env.ROOMS, c.req.param('room'), c.req.raw))
 * ```
 *
 * @param namespace - the Durable Object binding (`env.ROOMS`)
 * @param name - the object's name: the same name always reaches the same object
 * @param request - the request, passed on as it is
 */
export function toObject(
  namespace: ObjectNamespace,
  name: string,
  request: Request,
): Promise<Response> {
  const stub = namespace.get(namespace.idFromName(name) as never)
  return stub.fetch(request as never) as Promise<Response>
}
