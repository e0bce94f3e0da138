// Fan-out on crossws's Bun adapter: `peer.subscribe` and `peer.publish` (Bun's own publish).
import crossws from 'crossws/adapters/bun'
import { announce, stats } from './_util.ts'

const ws = crossws({
  hooks: {
    open(peer) {
      if (new URL(peer.request.url).searchParams.get('role') === 'sub') peer.subscribe('fanout')
      peer.send('ready')
    },
    message(peer, message) {
      peer.publish('fanout', message.rawData)
    },
  },
})
const server = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  websocket: ws.websocket,
  async fetch(req, server) {
    if (req.headers.get('upgrade') === 'websocket') return ws.handleUpgrade(req, server)
    return new Response(stats())
  },
})
announce(server.port)
