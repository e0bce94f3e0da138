/**
 * The channel app every runtime serves in the client's tests: it imports only hono, zod and
 * `@handshake/core`, so Node, Bun, Deno and workerd run it as is.
 * @module
 */
import { getHub, upgrade } from '@handshake/core'
import { CHANNEL_PROTOCOL, Channels, closeChannel } from '@handshake/core/channels'
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

/** The app: `/ws` for channels, `/publish/:room` to publish from a route, `/close/:code`. */
export function createChannelsApp(): Hono {
  const app = new Hono()
  app.get('/ws', upgrade(channels, options))
  app.get('/close/:code', upgrade(closer, options))
  app.post('/publish/:room', async (c) => {
    const topic = `rooms/${c.req.param('room')}` as const
    channels.publish(getHub(c).topics, topic, await c.req.json())
    return c.json({ subscribers: getHub(c).topics.subscribers(topic) })
  })
  return app
}
