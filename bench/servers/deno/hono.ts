// Hono's own helper on Deno: `upgradeWebSocket` from hono/deno.
import { Hono } from 'hono'
import { upgradeWebSocket } from 'hono/deno'
import { listen, stats } from './_util.ts'

const app = new Hono()
app.get('/stats', (c) => c.body(stats(), 200, { 'content-type': 'application/json' }))
app.get(
  '/',
  upgradeWebSocket(() => ({
    onMessage(event, ws) {
      ws.send(event.data as string | ArrayBuffer)
    },
  })),
)
Deno.serve(listen, app.fetch)
