import WebSocket from '/work/main/packages/conformance/node_modules/ws/index.js'
const port = process.argv[2]
const wait = (ms) => new Promise(r => setTimeout(r, ms))
async function open(path) { const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`); ws.on('error', e => console.log(path, 'err', e.message)); ws.on('message', (d) => console.log(path, 'got', d.length, d.length < 10 ? [...d] : '')); ws.on('close', (c, r) => console.log(path, 'close', c, r.toString())); ws.on('unexpected-response', (q, r) => console.log('unexpected', r.statusCode)); await new Promise(r => ws.on('open', r)); return ws }
await open('/view'); await wait(200)
await open('/term'); await wait(200)
await open('/ping'); await wait(200)
const p = await open('/pause'); for (let i=0;i<5;i++) p.send('x'.repeat(1000)); await wait(800)
const b = await open('/big'); await wait(3000)
process.exit(0)
