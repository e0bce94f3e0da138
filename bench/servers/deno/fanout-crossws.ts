// Fan-out on crossws's Deno adapter: `peer.subscribe` and `peer.publish`.
import crossws from 'crossws/adapters/deno'
import { listen, stats } from './_util.ts'

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
Deno.serve(listen, (req, info) => {
  if (req.headers.get('upgrade') !== 'websocket') return new Response(stats())
  return ws.handleUpgrade(req, info)
})
