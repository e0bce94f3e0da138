// Raw `Deno.upgradeWebSocket` on Deno.serve: the limit for Deno.
import { listen, stats } from './_util.ts'

Deno.serve(listen, (req) => {
  if (req.headers.get('upgrade') !== 'websocket') return new Response(stats())
  const { socket, response } = Deno.upgradeWebSocket(req)
  socket.onmessage = (event) => socket.send(event.data)
  return response
})
