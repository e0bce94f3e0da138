// Hono's own helper on Bun: `upgradeWebSocket` and `websocket` from hono/bun.
import { Hono } from 'hono'
import { upgradeWebSocket, websocket } from 'hono/bun'
import { announce, stats } from './_util.ts'

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
const server = Bun.serve({ hostname: '127.0.0.1', port: 0, fetch: app.fetch, websocket })
announce(server.port)
