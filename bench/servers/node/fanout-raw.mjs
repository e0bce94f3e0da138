// Fan-out on raw `ws`: a loop of sends over a Set of subscribers, the limit for Node.
import { createServer } from 'node:http'
import { WebSocketServer } from 'ws'
import { announce, stats } from './_util.mjs'

const subscribers = new Set()
const server = createServer((_req, res) => res.end(stats()))
const wss = new WebSocketServer({ server })
wss.on('connection', (ws, req) => {
  ws.on('error', () => {})
  if (new URL(req.url, 'http://x').searchParams.get('role') === 'sub') {
    subscribers.add(ws)
    ws.on('close', () => subscribers.delete(ws))
  } else {
    ws.on('message', (data, isBinary) => {
      for (const sub of subscribers) sub.send(data, { binary: isBinary })
    })
  }
  ws.send('ready')
})
server.listen(0, '127.0.0.1', () => announce(server.address().port))
