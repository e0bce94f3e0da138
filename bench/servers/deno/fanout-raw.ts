// Fan-out on raw `Deno.upgradeWebSocket`: a loop of sends over a Set of subscribers.
import { listen, stats } from './_util.ts'

const subscribers = new Set<WebSocket>()
Deno.serve(listen, (req) => {
  if (req.headers.get('upgrade') !== 'websocket') return new Response(stats())
  const { socket, response } = Deno.upgradeWebSocket(req)
  const sub = new URL(req.url).searchParams.get('role') === 'sub'
  socket.binaryType = 'arraybuffer'
  socket.onopen = () => {
    if (sub) subscribers.add(socket)
    socket.send('ready')
  }
  socket.onclose = () => subscribers.delete(socket)
  socket.onmessage = (event) => {
    for (const s of subscribers) s.send(event.data)
  }
  return response
})
