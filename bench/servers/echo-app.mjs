/**
 * The Handshake echo app, written the way the README teaches, shared by every runtime's entry.
 * `/` upgrades; `/stats` answers the server's memory after a GC, for the idle-memory workload.
 */
import { upgrade } from '@handshake/core'
import { Hono } from 'hono'

/** Echoes every message back, pulling with `for await`. */
class Echo {
  async serve(conn) {
    for await (const msg of conn) await conn.send(msg.data)
  }
}

/**
 * The app. `stats` returns the JSON body of `/stats`; workerd has none.
 * @param {(() => string) | undefined} stats
 */
export function echoApp(stats) {
  const app = new Hono()
  if (stats) app.get('/stats', (c) => c.body(stats(), 200, { 'content-type': 'application/json' }))
  app.get('/', upgrade(new Echo()))
  return app
}
