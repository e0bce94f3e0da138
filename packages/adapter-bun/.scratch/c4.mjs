import WebSocket from '/work/main/packages/conformance/node_modules/ws/index.js'
const port = process.argv[2]
for (const path of ['/none', '/empty']) {
  await new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, ['a', 'b'])
    ws.on('upgrade', (res) => console.log(path, 'proto header', JSON.stringify(res.headers['sec-websocket-protocol']), res.headers))
    ws.on('error', (e) => { console.log(path, 'error', e.message); resolve() })
    ws.on('open', () => console.log(path, 'open protocol', JSON.stringify(ws.protocol)))
    ws.on('close', (c) => { console.log(path, 'close', c); resolve() })
  })
}
// no protocols offered
await new Promise((resolve) => { const ws = new WebSocket(`ws://127.0.0.1:${port}/none`); ws.on('upgrade', res => console.log('noffer', res.headers)); ws.on('close', resolve); ws.on('error', e => {console.log(e.message); resolve()}) })
process.exit(0)
