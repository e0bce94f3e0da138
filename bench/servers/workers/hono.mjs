// Hono's own helper on Workers: `upgradeWebSocket` from hono/cloudflare-workers.
import { Hono } from 'hono'
import { upgradeWebSocket } from 'hono/cloudflare-workers'

const app = new Hono()
app.get(
  '/',
  upgradeWebSocket(() => ({
    onMessage(event, ws) {
      ws.send(event.data)
    },
  })),
)
export default app
