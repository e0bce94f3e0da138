// Hono's own helper on Node: `upgradeWebSocket` from @hono/node-server with a `ws` server.
import { serve, upgradeWebSocket } from '@hono/node-server'
import { Hono } from 'hono'
import { WebSocketServer } from 'ws'
import { announce, stats } from './_util.mjs'

const app = new Hono()
app.get('/stats', (c) => c.body(stats(), 200, { 'content-type': 'application/json' }))
app.get(
  '/',
  upgradeWebSocket(() => ({
    onMessage(event, ws) {
      ws.send(event.data)
    },
  })),
)
const wss = new WebSocketServer({ noServer: true })
serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1', websocket: { server: wss } }, (info) =>
  announce(info.port),
)
