// A bare WebSocketPair Worker: the limit for workerd.
export default {
  fetch(request) {
    if (request.headers.get('upgrade') !== 'websocket') return new Response('not a WebSocket')
    const [client, server] = Object.values(new WebSocketPair())
    server.accept()
    // Binary messages arrive as Blob by default since compatibility date 2026-03-17.
    server.binaryType = 'arraybuffer'
    server.addEventListener('message', (event) => server.send(event.data))
    return new Response(null, { status: 101, webSocket: client })
  },
}
