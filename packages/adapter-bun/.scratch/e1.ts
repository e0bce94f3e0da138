const s = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch(req, server) {
  try { const r = server.upgrade(req, { data: {x:1} }); console.log('upgrade returned', r) } catch (e) { console.log('threw', String(e), e?.constructor?.name) }
  return new Response('no')
}})
const r = await fetch(`http://127.0.0.1:${s.port}/`, { headers: { upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' } })
console.log(r.status, await r.text())
s.stop(true)
