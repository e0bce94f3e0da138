/**
 * The fan-out app of Handshake, shared by every runtime's entry, on one route as the peers'
 * entries are (crossws groups its peers by path): `/fanout?role=sub` joins the topic and says
 * `ready` once the subscription counts; `/fanout?role=pub` says `ready`, then publishes every
 * message it reads to the topic with `conn.publish`, as a room controller does.
 */
import { upgrade } from '@handshake/core'
import { Hono } from 'hono'

export const TOPIC = 'fanout'

/** @param {(() => string) | undefined} stats */
export function fanoutApp(stats) {
  const app = new Hono()
  if (stats) app.get('/stats', (c) => c.body(stats(), 200, { 'content-type': 'application/json' }))
  app.get(
    '/fanout',
    upgrade({
      async serve(conn, c) {
        if (c.req.query('role') === 'sub') {
          await conn.subscribe(TOPIC)
          await conn.send('ready')
          for await (const _ of conn) {
            // subscribers only listen
          }
          return
        }
        await conn.send('ready')
        for await (const msg of conn) conn.publish(TOPIC, msg.data)
      },
    }),
  )
  return app
}
