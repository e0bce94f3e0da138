// Floods a Redis channel from its own process, so that it goes on while the test's event loop is
// blocked: `node flood.mjs PORT CHANNEL MS SIZE`. Each message is a Handshake envelope from a
// made-up instance, numbered, so the receiver can check order. Prints `SENT n` at the end.
import net from 'node:net'

const [port, channel, ms, size] = process.argv.slice(2)
const instance = 'f'.repeat(16)
const padding = 'x'.repeat(Number(size))
const socket = net.connect(Number(port), '127.0.0.1')
socket.on('data', () => {}) // Replies are read and dropped.
socket.on('error', () => {})
let sent = 0
const end = Date.now() + Number(ms)
const command = (message) =>
  `*3\r\n$7\r\nPUBLISH\r\n$${Buffer.byteLength(channel)}\r\n${channel}\r\n$${Buffer.byteLength(message)}\r\n${message}\r\n`
function pump() {
  while (Date.now() < end) {
    let batch = ''
    for (let i = 0; i < 100; i++)
      batch += command(`t${instance}${(sent + 1).toString(16)}:${sent++} ${padding}`)
    if (!socket.write(batch)) return void socket.once('drain', pump)
  }
  socket.end(() => {
    console.log(`SENT ${sent}`)
    process.exit(0)
  })
}
socket.on('connect', pump)
