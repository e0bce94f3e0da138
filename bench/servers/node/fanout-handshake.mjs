// Fan-out on Handshake, Node: `conn.subscribe` and `conn.publish`. With REDIS_URL, the server's
// topics use the Redis backplane of @handshake/redis, so the publishes reach the other instances.
// With HISTORY=N as well, the topic keeps its last N messages in Redis Streams (issue 20).
import { serve } from '@handshake/node'
import { fanoutApp } from '../fanout-app.mjs'
import { announce, stats } from './_util.mjs'

const server = await serve(fanoutApp(stats), { port: 0, hostname: '127.0.0.1', onListen() {} })
if (process.env.REDIS_URL) {
  if (process.env.HISTORY) {
    const size = Number(process.env.HISTORY)
    server.topics.useHistory({ history: () => ({ size, ttl: 600_000 }) })
  }
  const { redisBackplane } = await import('@handshake/redis')
  const { Redis } = await import('ioredis')
  await server.topics.useBackplane(redisBackplane({ client: new Redis(process.env.REDIS_URL) }))
}
announce(server.address.port)
