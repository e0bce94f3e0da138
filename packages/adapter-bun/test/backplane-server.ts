/**
 * An instance of the two-instance scenario, in its own Bun process: the conformance app on a
 * Redis backplane, with the documented entry (`Bun.serve({ fetch: app.fetch, websocket })`), on
 * 127.0.0.1 and a port the OS picks, printed as `{"listening": port}`. Arguments: the Redis URL
 * and the client (`ioredis` or `node-redis`).
 */
import { createConformanceApp } from '@handshake/conformance/app'
import { useRedisBackplane } from '@handshake/conformance/backplane-setup'
import { websocket } from '../src/index.js'

const [redisUrl = '', client = ''] = process.argv.slice(2)
await useRedisBackplane(redisUrl, client)
const app = createConformanceApp()
const server = Bun.serve({ hostname: '127.0.0.1', port: 0, fetch: app.fetch, websocket })
console.log(JSON.stringify({ listening: server.port }))
