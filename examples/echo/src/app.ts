// The app is the same on every runtime; only the entry file differs.
import { type Conn, type Controller, upgrade } from '@handshake/core'
import { Hono } from 'hono'

/** Echoes every message back, then lets the upgrader close the connection normally. */
export class Echo implements Controller {
  async serve(conn: Conn) {
    for await (const msg of conn) await conn.send(msg.data)
  }
}

export const app = new Hono()
app.get('/', (c) => c.text('Handshake echo: connect a WebSocket client to /ws\n'))
app.get('/ws', upgrade(new Echo()))
