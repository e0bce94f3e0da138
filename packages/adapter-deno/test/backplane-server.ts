/**
 * An instance of the two-instance scenario, in its own Deno process: the conformance app on a
 * Redis backplane, through this package's `serve`, on 127.0.0.1 and a port the OS picks, printed
 * as `{"listening": port}`. Arguments: the Redis URL, the client (`ioredis` or `node-redis`), and
 * `history` for the history app with history on (the history scenarios), or `presence` for the
 * presence app with a short heartbeat (the presence scenarios).
 */
// Relative imports, as in server.ts: Deno runs the suite's TypeScript from its source.
import { createConformanceApp } from '../../conformance/src/app.ts'
import {
  createHistoryApp,
  createPresenceApp,
  useRedisBackplane,
} from '../../conformance/src/backplane-setup.ts'
import { serve } from '../src/index.ts'

const [redisUrl = '', client = '', mode = ''] = (
  globalThis as unknown as { Deno: { args: string[] } }
).Deno.args
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
  },
)
await useRedisBackplane(server.topics, redisUrl, client, { history, presence })
console.log(JSON.stringify({ listening: server.address.port }))
