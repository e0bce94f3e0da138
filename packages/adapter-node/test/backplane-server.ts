/**
 * An instance of the two-instance scenario, in its own Node process (`node --import tsx`): the
 * conformance app on a Redis backplane, on 127.0.0.1 and a port the OS picks, printed as
 * `{"listening": port}`. Arguments: the Redis URL and the client (`ioredis` or `node-redis`).
 */
import { createConformanceApp } from '@handshake/conformance/app'
import { useRedisBackplane } from '@handshake/conformance/backplane-setup'
import { serve } from '../src/index.js'

const [redisUrl = '', client = ''] = process.argv.slice(2)
const server = await serve(createConformanceApp(), {
  port: 0,
  hostname: '127.0.0.1',
  onListen() {},
})
await useRedisBackplane(server.topics, redisUrl, client)
console.log(JSON.stringify({ listening: server.address.port }))
