const log = (...a: unknown[]) => console.log('[srv]', ...a)
const s = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch(req, server) {
  const u = new URL(req.url)
  const ok = server.upgrade(req, { data: { path: u.pathname }, headers: { 'x-test': 'yes', 'sec-websocket-protocol': 'chat' } })
  log('upgrade', ok)
  return ok ? new Response(null) : new Response('no', { status: 400 })
}, websocket: {
  maxPayloadLength: 1024,
  open(ws) { ws.binaryType = 'uint8array'; log('open', ws.data.path) ; if (ws.data.path === '/close') { ws.close(4000, 'bye'); log('after close, readyState', ws.readyState) } },
  message(ws, m) { log('message', typeof m, m instanceof Uint8Array ? [m.byteOffset, m.byteLength, m.buffer.byteLength] : m); if (ws.data.path==='/echo') log('send ret', ws.send(m)) },
  close(ws, code, reason) { log('close', code, JSON.stringify(reason)) },
  pong(ws, d) { log('pong', d) },
  drain(ws) { log('drain') },
}})
console.log('PORT', s.port)
