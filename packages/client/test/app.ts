/**
 * The channel app every runtime serves in the client's tests: it imports only hono, zod and
 * `@handshake/core`, so Node, Bun, Deno and workerd run it as is.
 * @module
 */
import { getHub, type Topics, upgrade } from '@handshake/core'
import { CHANNEL_PROTOCOL, Channels, channelFrame, closeChannel } from '@handshake/core/channels'
import { Hono } from 'hono'
import { z } from 'zod'

/** The definition the tests' clients are typed with. */
export const channels = new Channels<{ name: string }>({
  open(conn, c) {
    conn.data = { name: c.req.query('name') ?? 'anonymous' }
  },
})
  .topic('rooms/:room', {
    message: z.object({
      text: z.string().min(1),
      n: z.number().optional(),
      from: z.string().optional(),
    }),
    publish: ({ conn, data }) => ({ ...data, from: conn.data.name }),
  })
  .topic('private/:name', { message: z.unknown(), authorize: () => false })
  .topic('feeds/:feed', { message: z.object({ n: z.number() }) })
  // Every subscriber is listed with its name, but `watch*`, which only sees the list.
  .topic('presence/:room', {
    message: z.unknown(),
    presence: ({ conn }) =>
      conn.data.name.startsWith('watch') ? undefined : { name: conn.data.name },
  })
  .request('add', z.object({ a: z.number(), b: z.number() }), ({ input }) => input.a + input.b)
  .request('sleep', z.number().int().min(0).max(10_000), async ({ input }) => {
    await new Promise((resolve) => setTimeout(resolve, input))
    return input
  })

const options = { subprotocols: [CHANNEL_PROTOCOL] }

/** Closes every connection at once with `/close/:code?reason=&retry=&retryAfter=`. */
const closer = new Channels({
  async open(conn, c) {
    const retry = c.req.query('retry')
    const retryAfter = c.req.query('retryAfter')
    await closeChannel(conn, Number(c.req.param('code')), c.req.query('reason') ?? '', {
      ...(retry === undefined ? {} : { retry: retry === 'true' }),
      ...(retryAfter === undefined ? {} : { retryAfter: Number(retryAfter) }),
    })
  },
})

/** Gives `feeds/*` a history of 1000 messages, framed for channel clients: call it once per hub. */
export function useFeedHistory(topics: Topics): void {
  topics.useHistory({
    history: (topic) => (topic.startsWith('feeds/') ? { size: 1000, ttl: 60_000 } : undefined),
    frame: channelFrame,
  })
}

/**
 * The app: `/ws` for channels, `/publish/:room` and `/feed/:feed?n=` to publish from a route,
 * `/subscribers/:room` to count a room's subscribers, `/presence/:room` for the members of
 * `presence/:room`, `/close/:code`, and an empty page at `/`
 * for a browser to load the client into.
 */
export function createChannelsApp(): Hono {
  const app = new Hono()
  app.get('/', (c) => c.html('<!doctype html><title>client</title>'))
  app.get('/ws', upgrade(channels, options))
  app.get('/close/:code', upgrade(closer, options))
  app.post('/publish/:room', async (c) => {
    const topic = `rooms/${c.req.param('room')}` as const
    channels.publish(getHub(c).topics, topic, await c.req.json())
    return c.json({ subscribers: getHub(c).topics.subscribers(topic) })
  })
  app.get('/subscribers/:room', (c) =>
    c.json({ subscribers: getHub(c).topics.subscribers(`rooms/${c.req.param('room')}`) }),
  )
  app.get('/presence/:room', async (c) =>
    c.json(await getHub(c).topics.presence(`presence/${c.req.param('room')}`)),
  )
  app.post('/feed/:feed', (c) => {
    channels.publish(getHub(c).topics, `feeds/${c.req.param('feed')}`, {
      n: Number(c.req.query('n')),
    })
    return c.body(null, 204)
  })
  return app
}
