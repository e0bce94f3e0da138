// Raw `ws` on node:http: the limit for Node.
import { createServer } from 'node:http'
import { WebSocketServer } from 'ws'
import { announce, stats } from './_util.mjs'

const server = createServer((_req, res) => res.end(stats()))
const wss = new WebSocketServer({ server })
wss.on('connection', (ws) => {
  ws.on('error', () => {})
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
})
server.listen(0, '127.0.0.1', () => announce(server.address().port))
