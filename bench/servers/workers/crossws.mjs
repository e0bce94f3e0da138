// crossws's Cloudflare adapter, without a Durable Object (its fallback for plain Workers).
import crossws from 'crossws/adapters/cloudflare'

const ws = crossws({
  hooks: {
    message(peer, message) {
      peer.send(message.rawData)
    },
  },
})
export default {
  fetch(request, env, context) {
    if (request.headers.get('upgrade') !== 'websocket') return new Response('not a WebSocket')
    return ws.handleUpgrade(request, env, context)
  },
}
