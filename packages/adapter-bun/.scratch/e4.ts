const s = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch(req, server) {
  const u = new URL(req.url)
  const headers: Record<string,string> = {}
  if (u.pathname === '/empty') headers['sec-websocket-protocol'] = ''
  const ok = server.upgrade(req, { data: {}, headers })
  return new Response(null, { status: 101, headers: { 'x-ignored': '1' } })
}, websocket: { open(ws) { setTimeout(() => ws.close(), 100) } }})
console.log('PORT', s.port)
