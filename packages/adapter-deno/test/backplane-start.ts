/**
 * Starts one instance of the two-instance scenarios in its own Deno process (the `deno`
 * devDependency): `backplane-server.ts` on one Redis, with the scenarios' `mode` (none, `history`
 * or `presence`), and the narrowest permissions the clients need.
 */
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type BackplaneClient, startServerProcess } from '@handshake/conformance'
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

/** The `start` of a backplane suite: an instance for the scenarios of `mode`. */
export const startInstance =
  (...mode: string[]) =>
  ({ redisUrl, client }: { redisUrl: string; client: BackplaneClient }) =>
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
        ...mode,
      ],
      { cwd: join(here, '..'), env: { ...process.env, DENO_NO_UPDATE_CHECK: '1', NO_COLOR: '1' } },
    )
