/**
 * Issue 22's presence faults: two Bun instances, each in its own process (the `bun`
 * devDependency), on one Redis.
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { backplanePresenceSuite, startServerProcess } from '@handshake/conformance'

const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..')

/** The binary of the `bun` devDependency, found the way Node resolves any package. */
function bunBinary(): string {
  const manifestPath = createRequire(join(packageDir, 'package.json')).resolve('bun/package.json')
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as { bin: { bun: string } }
  return join(dirname(manifestPath), manifest.bin.bun)
}

backplanePresenceSuite({
  name: 'bun',
  start: ({ redisUrl, client }) =>
    startServerProcess(
      bunBinary(),
      [join(packageDir, 'test', 'backplane-server.ts'), redisUrl, client, 'presence'],
      { cwd: packageDir },
    ),
})
