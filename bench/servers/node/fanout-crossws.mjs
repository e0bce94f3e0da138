// Fan-out on crossws's Node adapter: `peer.subscribe` and `peer.publish`. With REDIS_URL, its
// Redis sync carries the publishes to the other instances.
import { createServer } from 'node:http'
import crossws from 'crossws/adapters/node'
import { announce, stats } from './_util.mjs'

const TOPIC = 'fanout'
const sync = process.env.REDIS_URL ? await redisSync(process.env.REDIS_URL) : undefined
const ws = crossws({
  sync,
  hooks: {
    open(peer) {
      if (new URL(peer.request.url).searchParams.get('role') === 'sub') peer.subscribe(TOPIC)
      peer.send('ready')
    },
    message(peer, message) {
      peer.publish(TOPIC, message.rawData)
    },
  },
})
const server = createServer((_req, res) => res.end(stats()))
server.on('upgrade', (req, socket, head) => ws.handleUpgrade(req, socket, head))
server.listen(0, '127.0.0.1', () => announce(server.address().port))

async function redisSync(url) {
  const { redis } = await import('crossws/sync')
  const { Redis } = await import('ioredis')
  return redis({ client: new Redis(url), channel: 'crossws-fanout' })
}
