/**
 * The test app in workerd: every request goes to one Durable Object (a plain Worker cannot
 * publish to another request's socket), which serves it with hibernatable sockets.
 * @module
 */
import { HandshakeObject, toObject } from '@handshake/workers'
import { Hono } from 'hono'
import { createChannelsApp, useFeedHistory } from './app.js'

interface Env {
  // biome-ignore lint/suspicious/noExplicitAny: workerd's namespace, untyped here
  CHANNELS: any
}

/** The object that holds every socket. */
export class ChannelsObject extends HandshakeObject<Env> {
  // How many times the constructor ran, counted in storage: a wake from hibernation runs it again.
  app = createChannelsApp().get('/constructed', async (c) =>
    c.json(await this.#storage.get('constructed')),
  )
  // biome-ignore lint/suspicious/noExplicitAny: workerd's storage, untyped here
  readonly #storage: any
  // biome-ignore lint/suspicious/noExplicitAny: workerd's state and env, untyped here
  constructor(ctx: any, env: Env) {
    super(ctx, env)
    this.#storage = ctx.storage
    useFeedHistory(this.topics)
    void ctx.blockConcurrencyWhile(async () => {
      await ctx.storage.put('constructed', ((await ctx.storage.get('constructed')) ?? 0) + 1)
    })
  }
}

export default new Hono<{ Bindings: Env }>().all('*', (c) =>
  toObject(c.env.CHANNELS, 'main', c.req.raw),
)
