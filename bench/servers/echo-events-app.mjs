/**
 * The Handshake echo app with an event controller (`message` per message, no read loop),
 * shared by every runtime's `events` entry. `/` upgrades; `/stats` answers the server's memory
 * after a GC, for the idle-memory workload. Compare it with `echo-app.mjs` (the `serve` loop).
 */
import { upgrade } from '@handshake/core'
import { Hono } from 'hono'

/** Echoes every message back from `message()`; the send's promise paces the next message. */
const echo = {
  message(conn, msg) {
    return conn.send(msg.data)
  },
}

/**
 * The app. `stats` returns the JSON body of `/stats`; workerd has none.
 * @param {(() => string) | undefined} stats
 */
export function echoEventsApp(stats) {
  const app = new Hono()
  if (stats) app.get('/stats', (c) => c.body(stats(), 200, { 'content-type': 'application/json' }))
  app.get('/', upgrade(echo))
  return app
}
