/**
 * Issue 22's presence faults: two Deno instances, each in its own process (the `deno`
 * devDependency), on one Redis, with the narrowest permissions the clients need.
 */
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  type BackplaneClient,
  backplanePresenceSuite,
  startServerProcess,
} from '@handshake/conformance'
import { denoBinary } from './deno-process.js'

const here = dirname(fileURLToPath(import.meta.url))

/** What each client needs beyond the network (see backplane.test.ts). */
const clientPermissions: Record<BackplaneClient, string[]> = {
  'node-redis': ['--allow-env=REDIS_DEBUG_MAINTENANCE'],
  ioredis: ['--allow-env'],
}

backplanePresenceSuite({
  name: 'deno',
  start: ({ redisUrl, client }) =>
    startServerProcess(
      denoBinary(),
      [
        'run',
        '--no-prompt',
        '--allow-net=127.0.0.1',
        ...clientPermissions[client],
        join(here, 'backplane-server.ts'),
        redisUrl,
        client,
        'presence',
      ],
      { cwd: join(here, '..'), env: { ...process.env, DENO_NO_UPDATE_CHECK: '1', NO_COLOR: '1' } },
    ),
})
