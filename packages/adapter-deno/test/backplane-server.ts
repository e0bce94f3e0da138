/**
 * An instance of the two-instance scenario, in its own Deno process: the conformance app on a
 * Redis backplane, through this package's `serve`, on 127.0.0.1 and a port the OS picks, printed
 * as `{"listening": port}`. Arguments: the Redis URL and the client (`ioredis` or `node-redis`).
 */
// Relative imports, as in server.ts: Deno runs the suite's TypeScript from its source.
import { createConformanceApp } from '../../conformance/src/app.ts'
import { useRedisBackplane } from '../../conformance/src/backplane-setup.ts'
import { serve } from '../src/index.ts'

const [redisUrl = '', client = ''] = (globalThis as unknown as { Deno: { args: string[] } }).Deno
  .args
const server = await serve(createConformanceApp(), { port: 0, hostname: '127.0.0.1' })
await useRedisBackplane(server.topics, redisUrl, client)
console.log(JSON.stringify({ listening: server.address.port }))
