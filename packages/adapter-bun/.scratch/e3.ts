const log = (...a: unknown[]) => console.log('[srv]', ...a)
try { new Response(null, { status: 101 }); log('101 ok') } catch (e) { log('101 throws', String(e)) }
const s = Bun.serve({ port: 0, hostname: '127.0.0.1', async fetch(req, server) {
  await new Promise(r => setTimeout(r, 10))
  const u = new URL(req.url)
  const data = { path: u.pathname, opened: false }
  const ok = server.upgrade(req, { data })
  log('upgrade', ok, 'opened sync?', data.opened)
  return new Response(null)
}, websocket: {
  open(ws) { ws.data.opened = true; ws.binaryType = 'uint8array'; log('open', ws.data.path)
    if (ws.data.path === '/view') { const buf = new Uint8Array([9,9,1,2,3,9,9]); log('send view', ws.send(buf.subarray(2,5))) }
    if (ws.data.path === '/term') { ws.terminate(); log('after terminate') }
    if (ws.data.path === '/big') { const big = new Uint8Array(8*1024*1024); let r; for (let i=0;i<4;i++) { r = ws.send(big); log('big send', r, ws.getBufferedAmount()) } ws.close(4001, 'after big'); log('closed after big') }
    if (ws.data.path === '/ping') { log('ping ret', ws.ping()) }
    if (ws.data.path === '/pause') { ws.pause(); log('paused', ws.isPaused); setTimeout(() => { log('resume'); ws.resume() }, 500) }
  },
  message(ws, m) { log('message', ws.data.path, typeof m === 'string' ? m.length : m.byteLength) },
  close(ws, code, reason) { log('close', ws.data.path, code, JSON.stringify(reason)) },
  pong(ws, d) { log('pong', d) },
  drain(ws) { log('drain', ws.getBufferedAmount()) },
}})
console.log('PORT', s.port)
