// crossws's Deno adapter on Deno.serve.
import crossws from 'crossws/adapters/deno'
import { listen, stats } from './_util.ts'

const ws = crossws({
  hooks: {
    message(peer, message) {
      peer.send(message.rawData)
    },
  },
})
Deno.serve(listen, (req, info) => {
  if (req.headers.get('upgrade') !== 'websocket') return new Response(stats())
  return ws.handleUpgrade(req, info)
})
