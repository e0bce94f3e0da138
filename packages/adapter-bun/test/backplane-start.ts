/**
 * Starts one instance of the two-instance scenarios in its own Bun process (the `bun`
 * devDependency): `backplane-server.ts` on one Redis, with the scenarios' `mode` (none, `history`
 * or `presence`).
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type BackplaneClient, startServerProcess } from '@handshake/conformance'

const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..')

/** The binary of the `bun` devDependency, found the way Node resolves any package. */
function bunBinary(): string {
  const manifestPath = createRequire(join(packageDir, 'package.json')).resolve('bun/package.json')
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as { bin: { bun: string } }
  return join(dirname(manifestPath), manifest.bin.bun)
}

/** The `start` of a backplane suite: an instance for the scenarios of `mode`. */
export const startInstance =
  (...mode: string[]) =>
  ({ redisUrl, client }: { redisUrl: string; client: BackplaneClient }) =>
    startServerProcess(
      bunBinary(),
      [join(packageDir, 'test', 'backplane-server.ts'), redisUrl, client, ...mode],
      { cwd: packageDir },
    )
