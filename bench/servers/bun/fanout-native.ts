// Fan-out on Bun's own topic tree: `ws.subscribe` and `server.publish`, the limit for Bun.
import { announce, stats } from './_util.ts'

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
      if (ws.data.sub) ws.subscribe('fanout')
      ws.send('ready')
    },
    message(_ws, message) {
      server.publish('fanout', message)
    },
  },
})
announce(server.port)
