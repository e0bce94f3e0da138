import WebSocket from '/work/main/packages/conformance/node_modules/ws/index.js'
import net from 'node:net'
const port = process.argv[2]
const wait = (ms) => new Promise(r => setTimeout(r, ms))
// 1. echo binary + headers
{
  const ws = new WebSocket(`ws://127.0.0.1:${port}/echo`, ['chat'])
  ws.on('upgrade', (res) => console.log('101 headers', res.headers))
  await new Promise(r => ws.on('open', r))
  ws.send(Buffer.from([1,2,3]))
  ws.send('hello')
  ws.send(Buffer.alloc(2000))
  ws.on('message', (d, isBin) => console.log('client got', isBin, d.length))
  ws.on('close', (c, r) => console.log('client close', c, r.toString()))
  await wait(300)
}
// 2. server closes; client never answers (raw tcp)
{
  const sock = net.connect(port, '127.0.0.1')
  sock.write('GET /close HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n')
  const t0 = Date.now()
  sock.on('data', d => console.log('raw got', Date.now()-t0, d.length, JSON.stringify(d.toString('latin1').slice(-20))))
  sock.on('end', () => console.log('raw end (FIN)', Date.now()-t0))
  sock.on('close', () => console.log('raw closed', Date.now()-t0))
  await wait(3000)
  sock.destroy()
}
// 3. invalid utf8 and unmasked frame
for (const [name, frame] of [['badutf8', Buffer.from([0x81, 0x82, 0,0,0,0, 0xff, 0xfe])], ['unmasked', Buffer.from([0x81, 0x02, 0x68, 0x69])], ['badopcode', Buffer.from([0x83, 0x80, 0,0,0,0])], ['badcode', Buffer.from([0x88, 0x82, 0,0,0,0, 0x03, 0xe7])]]) {
  const sock = net.connect(port, '127.0.0.1')
  sock.write('GET /x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n')
  let first = true
  sock.on('data', d => { if (first) { first = false; sock.write(frame); return } console.log(name, 'raw got', d.toString('hex')) })
  await wait(400)
  sock.destroy()
}
// 4. peer closes with code, and without code, and vanish
for (const [name, frame] of [['close4001', Buffer.from([0x88, 0x82, 0,0,0,0, 0x0f, 0xa1])], ['closeNoCode', Buffer.from([0x88, 0x80, 0,0,0,0])], ['vanish', null], ['tooBig', Buffer.concat([Buffer.from([0x82, 0xfe, 0x08, 0x00, 0,0,0,0]), Buffer.alloc(2048)])]]) {
  const sock = net.connect(port, '127.0.0.1')
  sock.write('GET /x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n')
  let first = true
  sock.on('data', d => { if (first) { first = false; if (frame) sock.write(frame); else sock.destroy(); return } console.log(name, 'raw got', d.toString('hex')) })
  await wait(400)
  sock.destroy()
}
// 5. ping from server? n/a
process.exit(0)
