// crossws's Bun adapter on Bun.serve.
import crossws from 'crossws/adapters/bun'
import { announce, stats } from './_util.ts'

const ws = crossws({
  hooks: {
    message(peer, message) {
      peer.send(message.rawData)
    },
  },
})
const server = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  websocket: ws.websocket,
  async fetch(req, server) {
    if (req.headers.get('upgrade') === 'websocket') {
      const response = await ws.handleUpgrade(req, server)
      if (response !== undefined) return response
      return
    }
    return new Response(stats())
  },
})
announce(server.port)
