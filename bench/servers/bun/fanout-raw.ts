// Fan-out on raw `Bun.serve`: a loop of sends over a Set of subscribers.
import type { ServerWebSocket } from 'bun'
import { announce, stats } from './_util.ts'

const subscribers = new Set<ServerWebSocket<{ sub: boolean }>>()
const server = Bun.serve<{ sub: boolean }>({
  hostname: '127.0.0.1',
  port: 0,
  fetch(req, server) {
    if (server.upgrade(req, { data: { sub: new URL(req.url).searchParams.get('role') === 'sub' } }))
      return
    return new Response(stats())
  },
  websocket: {
    open(ws) {
      if (ws.data.sub) subscribers.add(ws)
      ws.send('ready')
    },
    message(_ws, message) {
      for (const sub of subscribers) sub.send(message)
    },
    close(ws) {
      subscribers.delete(ws)
    },
  },
})
announce(server.port)
