/**
 * Two Deno instances, each in its own process (the `deno` devDependency), on one Redis: the
 * suite's two-instance scenario, with the narrowest permissions the clients need.
 */
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type BackplaneClient, backplaneSuite, startServerProcess } from '@handshake/conformance'
import { denoBinary } from './deno-process.js'

const here = dirname(fileURLToPath(import.meta.url))

/**
 * What each client needs beyond the network, found by running with none: node-redis reads one
 * variable, while ioredis imports `debug`, which lists the whole environment when it loads.
 */
const clientPermissions: Record<BackplaneClient, string[]> = {
  'node-redis': ['--allow-env=REDIS_DEBUG_MAINTENANCE'],
  ioredis: ['--allow-env'],
}

backplaneSuite({
  name: 'deno',
  start: ({ redisUrl, client }) =>
    startServerProcess(
      denoBinary(),
      [
        'run',
        '--no-prompt',
        // Redis and the listener are both on 127.0.0.1.
        '--allow-net=127.0.0.1',
        ...clientPermissions[client],
        join(here, 'backplane-server.ts'),
        redisUrl,
        client,
      ],
      { cwd: join(here, '..'), env: { ...process.env, DENO_NO_UPDATE_CHECK: '1', NO_COLOR: '1' } },
    ),
})
