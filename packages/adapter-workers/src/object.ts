/**
 * `HandshakeObject`: a Durable Object class that serves a Hono app, whose event controllers'
 * sockets hibernate (the WebSocket Hibernation API), and helpers to reach one from the Worker.
 *
 * ```ts
 * import { HandshakeObject, toObject } from '@handshake/workers'
 *
 * export class Room extends HandshakeObject<Env> {
 *   app = app // the same Hono app as on Node: app.get('/rooms/:room', upgrade(room))
 * }
 *
 * export default {
 *   fetch: (request: Request, env: Env) =>
 *     toObject(env.ROOMS, new URL(request.url).pathname.split('/')[2] ?? 'lobby', request),
 * }
 * ```
 * @module
 */

import { DurableObject } from 'cloudflare:workers'
import type { DurableObjectState } from '@cloudflare/workers-types'
import {
  Connections,
  type Hub,
  type MessageData,
  type ShutdownOptions,
  Topics,
} from '@handshake/core'
import {
  ADAPTER,
  type Adapter,
  type HibernatableSocket,
  Hibernation,
  HUB,
  type UpgradeRequest,
} from '@handshake/core/adapter'
import type { Context, ExecutionContext, Hono } from 'hono'
import { adapter as workersAdapter } from './index.js'
import {
  ABNORMAL_CLOSURE,
  answerClose,
  CLOSED,
  faultCode,
  switchingHeaders,
  webSocketPair,
} from './shared.js'

// --- types ---

/** The env key that carries the URL of the request the object is serving. */
const OBJECT_URL = Symbol('handshake.objectUrl')

/**
 * What {@link toObject} needs of a Durable Object namespace binding (`env.ROOMS`). Loose on
 * purpose: the binding's `Request` and `Response` types (workers-types') are not the DOM's.
 */
export interface ObjectNamespace {
  idFromName(name: string): unknown
  get(id: never): { fetch(request: never): Promise<unknown> }
}

// --- the object ---

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
 * It serves either kind of controller:
 *
 * - an event controller (`open`, `message`, `close`) is accepted through the Hibernation API
 *   (`ctx.acceptWebSocket`): while no message arrives, the platform may drop the object from
 *   memory and keep its sockets open, and bills no duration meanwhile. The next event builds the
 *   object again, and every connection comes back from its socket's attachment: `conn.data`,
 *   its topics, its URL and protocol. `open` does not run again. Nothing of Handshake keeps the
 *   object awake: no timer between events (the core arms no close timer) and no `waitUntil`;
 * - a `serve` controller is accepted as in a plain Worker (`server.accept()`): the object stays
 *   in memory while `serve` runs.
 *
 * The object is a hub of its own: its {@link HandshakeObject.topics} and
 * {@link HandshakeObject.connections} are what `getHub(c)` returns in the app's routes inside
 * the object, and `conn.hub` for its connections. So a publish from a route or a connection
 * reaches every socket of this object, and no other's (several objects may share an isolate),
 * and {@link HandshakeObject.shutdown} closes this object's sockets only.
 * {@link HandshakeObject.publish} is callable over RPC from the Worker.
 *
 * After a hibernation, the upgrade request is gone: `onError` gets a context that knows the
 * URL only, and reading its headers throws. Keep what you need in `conn.data` in `open`.
 *
 * The object's own methods are `fetch`, `webSocketMessage`, `webSocketClose`,
 * `webSocketError`, `publish` and `shutdown`: a subclass that overrides one must call `super`'s.
 */
export abstract class HandshakeObject<Env = unknown> extends DurableObject<Env> implements Hub {
  /** The app the object serves: the same Hono app as on the other runtimes, or its own. */
  // biome-ignore lint/suspicious/noExplicitAny: any app, whatever its env and schema
  abstract readonly app: Hono<any, any, any>
  readonly #topics = new Topics()
  readonly #connections = new Connections()

  // The core's side of each hibernatable socket, for this incarnation of the object.
  readonly #sockets = new Hibernation<HibernatableSocket>({
    hub: this,
    app: () => this.app,
    env: () => this.#env(),
    sockets: () => this.ctx.getWebSockets() as unknown as HibernatableSocket[],
    fail: (ws) => answerClose(ws, 1011, 'Internal server error'),
  })
  #appEnv: object | undefined
  #executionCtx: ExecutionContext | undefined

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
    this.#sockets.restore()
    return this.#topics
  }

  /** This object's open connections, the ones accepted before the last hibernation included. */
  get connections(): Connections {
    this.#sockets.restore()
    return this.#connections
  }

  /**
   * Serves a request with the app: an upgrade to one of its WebSocket routes, or any HTTP
   * route of the app. The app's routes get an execution context (`c.executionCtx`) whose
   * `waitUntil` is the object's, and `getHub(c)` is this object.
   */
  override fetch(request: Request): Response | Promise<Response> {
    this.#sockets.restore()
    const env = Object.create(this.#env(), { [OBJECT_URL]: { value: request.url } })
    return this.app.fetch(request, env, this.#executionContext())
  }

  /** A message on a hibernatable socket: handed to its controller's `message`. */
  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): void {
    const events = this.#sockets.events(ws as never)
    events?.message(typeof message === 'string' ? message : new Uint8Array(message))
  }

  /**
   * A hibernatable socket closed. The Hibernation API does not answer a peer's close frame by
   * itself: the object answers it once with the same code (the socket is still CLOSING), and
   * sends nothing when the socket is already CLOSED (the peer answered ours).
   */
  override webSocketClose(ws: WebSocket, code: number, reason: string, wasClean: boolean): void {
    const socket = ws as unknown as HibernatableSocket
    if (socket.readyState !== CLOSED && code !== ABNORMAL_CLOSURE) answerClose(socket, code, reason)
    this.#sockets.events(socket)?.closed(code, reason, wasClean)
    this.#sockets.forget(socket)
  }

  /** A hibernatable socket failed: the connection ends as abnormal (1006). */
  override webSocketError(ws: WebSocket, error: unknown): void {
    const socket = ws as unknown as HibernatableSocket
    const events = this.#sockets.events(socket)
    const err = error instanceof Error ? error : new Error(String(error))
    events?.error(err, faultCode(err))
    events?.closed(ABNORMAL_CLOSURE, err.message, false)
    this.#sockets.forget(socket)
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
    this.#sockets.restore()
    return this.connections.shutdown(options)
  }

  // --- the adapter ---

  /** The env the app sees: the object's bindings, and this object as adapter and hub. */
  #env(): object {
    if (!this.#appEnv) {
      const adapter: Adapter = {
        name: 'workers',
        hub: () => this,
        upgrade: (c, request) =>
          request.events
            ? this.#accept(request, (c.env as { [OBJECT_URL]?: string } | undefined)?.[OBJECT_URL])
            : workersAdapter.upgrade(c as Context, request),
      }
      this.#appEnv = Object.create(this.env as object, {
        [ADAPTER]: { value: adapter },
        [HUB]: { value: this },
      })
    }
    return this.#appEnv as object
  }

  /**
   * The execution context of the app's requests: a Durable Object gets none of its own, and
   * Hono's `c.executionCtx` throws without one.
   */
  #executionContext(): ExecutionContext {
    this.#executionCtx ??= {
      waitUntil: (promise) => this.ctx.waitUntil(promise),
      passThroughOnException() {
        throw new Error(
          'passThroughOnException() has no origin to fall back to in a Durable Object: call it in the Worker, before toObject()',
        )
      },
      props: undefined,
    } as ExecutionContext
    return this.#executionCtx
  }

  /** Accepts an event controller's socket through the Hibernation API. */
  #accept(request: UpgradeRequest, objectUrl: string | undefined): Response {
    const { 0: client, 1: server } = new (webSocketPair())()
    this.ctx.acceptWebSocket(server as never)
    this.#sockets.accept(server as unknown as HibernatableSocket, request, objectUrl)
    const headers = switchingHeaders(request)
    return new Response(null, { status: 101, webSocket: client, headers } as ResponseInit)
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
