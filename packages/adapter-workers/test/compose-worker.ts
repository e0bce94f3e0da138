/**
 * The Worker of the wake tests: one `HandshakeObject` whose app reaches its WebSocket routes in
 * every way Hono composes a route, an `alarm()` and an RPC method that use the object's topics
 * and connections, and a route that uses `c.executionCtx`.
 * @module
 */
import '../src/index.js'
import type { DurableObjectNamespace, DurableObjectState } from '@cloudflare/workers-types'
import { type EventControllerWithHooks, upgrade } from '@handshake/core'
import { Hono } from 'hono'
import { mount } from 'hono/mount'
import { HandshakeObject, toObject } from '../src/index.js'

interface Env {
  COMPOSED: DurableObjectNamespace<Composed>
}

/** The topic every socket of the object subscribes to. */
const TOPIC = 'all'

/** What `/census` answers: the object's hub as an RPC method sees it. */
export interface Census {
  /** How many times the object's constructor ran (counted in its storage). */
  constructed: number
  connections: number
  subscribers: number
}

/** Answers each message with the way its route was composed: a woken socket still answers. */
function chat(way: string): EventControllerWithHooks<{ way: string }> {
  return {
    async open(conn) {
      conn.data = { way }
      await conn.subscribe(TOPIC)
    },
    message(conn, msg) {
      return conn.send(`${conn.data.way}: ${String(msg.data)}`)
    },
  }
}

/** The app, built once per incarnation of the object. */
function composedApp(object: Composed): Hono {
  const app = new Hono()
  // app.route() of a sub-app with its own onError: Hono wraps each of its handlers.
  const routed = new Hono().onError((err, c) => c.text(err.message, 500))
  routed.get('/ws', upgrade(chat('route')))
  app.route('/routed', routed)
  // basePath(): a child app that shares the router.
  app.basePath('/based').get('/ws', upgrade(chat('basePath')))
  // app.mount() and hono/mount's mount(): another app's fetch, which no router shows.
  const mounted = new Hono().get('/ws', upgrade(chat('mount')))
  app.mount('/mounted', mounted.fetch)
  const helper = new Hono().get('/ws', upgrade(chat('mountHelper')))
  app.all('/helper/*', mount(helper.fetch))
  // Middleware before the route: app.use() and a handler in the route itself.
  app.use('/guarded/*', async (c, next) => {
    c.header('x-guarded', '1')
    await next()
  })
  app.get(
    '/guarded/ws',
    async (_c, next) => {
      await next()
    },
    upgrade(chat('middleware')),
  )
  app.get('/census', async (c) => c.json(await object.census()))
  app.post('/alarm', async (c) => {
    await object.armAlarm(Number(c.req.query('in')))
    return c.body(null, 204)
  })
  app.get('/ctx', (c) => {
    c.executionCtx.waitUntil(Promise.resolve())
    return c.text('has an execution context')
  })
  return app
}

export class Composed extends HandshakeObject<Env> {
  app = composedApp(this)
  readonly #storage: DurableObjectState['storage']

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx as never, env)
    this.#storage = ctx.storage
    void ctx.blockConcurrencyWhile(async () => {
      const constructed = ((await ctx.storage.get<number>('constructed')) ?? 0) + 1
      await ctx.storage.put('constructed', constructed)
    })
  }

  /** An RPC method that reads the hub; after a wake it must see every socket. */
  async census(): Promise<Census> {
    return {
      constructed: (await this.#storage.get<number>('constructed')) ?? 0,
      connections: this.connections.size,
      subscribers: this.topics.subscribers(TOPIC),
    }
  }

  async armAlarm(inMs: number): Promise<void> {
    await this.#storage.setAlarm(Date.now() + inMs)
  }

  /** Publishes which incarnation the alarm ran in, to every socket of the object. */
  async alarm(): Promise<void> {
    const constructed = (await this.#storage.get<number>('constructed')) ?? 0
    this.topics.publish(TOPIC, `alarm in incarnation ${constructed}`)
  }
}

/** One object serves every test of the file: the eviction is waited for once. */
const OBJECT = 'composed'

const worker = new Hono<{ Bindings: Env }>()
// An RPC call that is neither fetch nor publish: the object restores nothing else first.
worker.get('/rpc/census', async (c) => {
  const stub = c.env.COMPOSED.get(c.env.COMPOSED.idFromName(OBJECT))
  return c.json(await stub.census())
})
worker.all('*', (c) => toObject(c.env.COMPOSED, OBJECT, c.req.raw))

export default worker
