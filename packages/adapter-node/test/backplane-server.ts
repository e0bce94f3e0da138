/**
 * An instance of the two-instance scenario, in its own Node process (`node --import tsx`): the
 * conformance app on a Redis backplane, on 127.0.0.1 and a port the OS picks, printed as
 * `{"listening": port}`. Arguments: the Redis URL, the client (`ioredis` or `node-redis`), and
 * `history` for the history app with history on (the history scenarios), or `presence` for the
 * presence app with a short heartbeat (the presence scenarios).
 */
import { createConformanceApp } from '@handshake/conformance/app'
import {
  createHistoryApp,
  createPresenceApp,
  useRedisBackplane,
} from '@handshake/conformance/backplane-setup'
import { serve } from '../src/index.js'

const [redisUrl = '', client = '', mode = ''] = process.argv.slice(2)
const history = mode === 'history'
const presence = mode === 'presence'
const server = await serve(
  history
    ? createHistoryApp()
    : presence
      ? createPresenceApp(() => server.topics)
      : createConformanceApp(),
  {
    port: 0,
    hostname: '127.0.0.1',
    onListen() {},
  },
)
await useRedisBackplane(server.topics, redisUrl, client, { history, presence })
console.log(JSON.stringify({ listening: server.address.port }))
