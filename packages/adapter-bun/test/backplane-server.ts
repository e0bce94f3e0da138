/**
 * An instance of the two-instance scenario, in its own Bun process: the conformance app on a
 * Redis backplane, with `serve(app)` (whose hub is at hand before the first request), on
 * 127.0.0.1 and a port the OS picks, printed as `{"listening": port}`. Arguments: the Redis URL,
 * the client (`ioredis` or `node-redis`), and `history` for the history app with history on (the
 * history scenarios).
 */
import { createConformanceApp } from '@handshake/conformance/app'
import { createHistoryApp, useRedisBackplane } from '@handshake/conformance/backplane-setup'
import { serve } from '../src/index.js'

const [redisUrl = '', client = '', mode = ''] = process.argv.slice(2)
const history = mode === 'history'
const server = await serve(history ? createHistoryApp() : createConformanceApp(), {
  hostname: '127.0.0.1',
  port: 0,
  onListen() {},
})
await useRedisBackplane(server.topics, redisUrl, client, { history })
console.log(JSON.stringify({ listening: server.address.port }))
