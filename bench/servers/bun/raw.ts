// Raw `Bun.serve` with websocket handlers: the limit for Bun.
import { announce, stats } from './_util.ts'

const server = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  fetch(req, server) {
    if (server.upgrade(req)) return
    return new Response(stats())
  },
  websocket: {
    message(ws, message) {
      ws.send(message)
    },
  },
})
announce(server.port)
