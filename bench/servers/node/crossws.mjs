// crossws's Node adapter (its bundled `ws`) on node:http.
import { createServer } from 'node:http'
import crossws from 'crossws/adapters/node'
import { announce, stats } from './_util.mjs'

const ws = crossws({
  hooks: {
    message(peer, message) {
      peer.send(message.rawData)
    },
  },
})
const server = createServer((_req, res) => res.end(stats()))
server.on('upgrade', (req, socket, head) => ws.handleUpgrade(req, socket, head))
server.listen(0, '127.0.0.1', () => announce(server.address().port))
