/**
 * The Handshake echo app with an event controller (`message` per message, no read loop),
 * shared by every runtime's `events` entry. `/` upgrades; `/stats` answers the server's memory
 * after a GC, for the idle-memory workload. Compare it with `echo-app.mjs` (the `serve` loop).
 *
 * `/channels` is the same server's channel controller (`handshake.v1`), priced against `/`: a
 * request `echo` whose handler returns its input, and a topic `echo` whose publishes a client
 * may ask to have acknowledged. Both check their input with a minimal Standard Schema (a
 * string), so that no validation library's own cost is counted.
 */
import { upgrade } from '@handshake/core'
import { CHANNEL_PROTOCOL, Channels } from '@handshake/core/channels'
import { Hono } from 'hono'

/** Echoes every message back from `message()`; the send's promise paces the next message. */
const echo = {
  message(conn, msg) {
    return conn.send(msg.data)
  },
}

/** A Standard Schema that accepts a string. */
const text = {
  '~standard': {
    version: 1,
    vendor: 'bench',
    validate: (value) =>
      typeof value === 'string' ? { value } : { issues: [{ message: 'Expected a string' }] },
  },
}

const channels = new Channels()
  .topic('echo', { message: text })
  .request('echo', text, ({ input }) => input)

/**
 * The app. `stats` returns the JSON body of `/stats`; workerd has none.
 * @param {(() => string) | undefined} stats
 */
export function echoEventsApp(stats) {
  const app = new Hono()
  if (stats) app.get('/stats', (c) => c.body(stats(), 200, { 'content-type': 'application/json' }))
  app.get('/', upgrade(echo))
  app.get('/channels', upgrade(channels, { subprotocols: [CHANNEL_PROTOCOL] }))
  return app
}
