/**
 * Issue 22's presence faults: two Node instances, each in its own process, on one Redis.
 */
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { backplanePresenceSuite, startServerProcess } from '@handshake/conformance'

const here = dirname(fileURLToPath(import.meta.url))
// tsx runs the TypeScript entry on Node 20, which cannot strip types itself.
const tsx = createRequire(import.meta.url).resolve('tsx')

backplanePresenceSuite({
  name: 'node',
  start: ({ redisUrl, client }) =>
    startServerProcess(
      process.execPath,
      ['--import', tsx, join(here, 'backplane-server.ts'), redisUrl, client, 'presence'],
      { cwd: join(here, '..') },
    ),
})
