// Fan-out on Handshake, Node: `conn.subscribe` and `conn.publish`. With REDIS_URL, the topics use
// the Redis backplane of @handshake/redis, so the publishes reach the other instances.
import { topics } from '@handshake/core'
import { serve } from '@handshake/node'
import { fanoutApp } from '../fanout-app.mjs'
import { announce, stats } from './_util.mjs'

if (process.env.REDIS_URL) {
  const { redisBackplane } = await import('@handshake/redis')
  const { Redis } = await import('ioredis')
  await topics.useBackplane(redisBackplane({ client: new Redis(process.env.REDIS_URL) }))
}
serve({ fetch: fanoutApp(stats).fetch, port: 0, hostname: '127.0.0.1' }, (info) =>
  announce(info.port),
)
