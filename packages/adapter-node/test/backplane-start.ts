/**
 * Starts one instance of the two-instance scenarios in its own Node process: `backplane-server.ts`
 * on one Redis, with the scenarios' `mode` (none, `history` or `presence`).
 */
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type BackplaneClient, startServerProcess } from '@handshake/conformance'

const here = dirname(fileURLToPath(import.meta.url))
// tsx runs the TypeScript entry on Node 20, which cannot strip types itself.
const tsx = createRequire(import.meta.url).resolve('tsx')

/** The `start` of a backplane suite: an instance for the scenarios of `mode`. */
export const startInstance =
  (...mode: string[]) =>
  ({ redisUrl, client }: { redisUrl: string; client: BackplaneClient }) =>
    startServerProcess(
      process.execPath,
      ['--import', tsx, join(here, 'backplane-server.ts'), redisUrl, client, ...mode],
      { cwd: join(here, '..') },
    )
