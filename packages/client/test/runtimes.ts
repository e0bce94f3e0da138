/**
 * Starts the test app (`server.ts`) on Bun or Deno, from the binaries the adapter packages'
 * devDependencies bring, in a child process stopped with SIGKILL.
 * @module
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startServerProcess } from '@handshake/conformance'
import type { RunningApp } from './suite.js'

const packages = fileURLToPath(new URL('../../', import.meta.url))
const here = fileURLToPath(new URL('.', import.meta.url))

/** The folder of `name`'s package.json, as the adapter package `from` resolves it. */
function packageDir(name: string, from: string): string {
  const require = createRequire(join(packages, from, 'package.json'))
  return dirname(require.resolve(`${name}/package.json`))
}

/** The real binary, not a shell shim: a signal must reach the runtime itself. */
function binary(runtime: 'bun' | 'deno'): string {
  if (runtime === 'deno') return join(packageDir('deno', 'adapter-deno'), 'deno')
  const dir = packageDir('bun', 'adapter-bun')
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
  return join(dir, manifest.bin.bun)
}

/** Starts the app on `runtime`. */
export async function startRuntime(runtime: 'bun' | 'deno'): Promise<RunningApp> {
  const args =
    runtime === 'deno'
      ? [
          'run',
          '--no-prompt',
          '--allow-net=127.0.0.1',
          `--allow-read=${packages}`,
          join(here, 'server.ts'),
        ]
      : [join(here, 'server.ts')]
  const server = await startServerProcess(binary(runtime), args, {
    cwd: join(here, '..'),
    env: { ...process.env, DENO_NO_UPDATE_CHECK: '1', NO_COLOR: '1' },
  })
  return { url: server.url, stop: server.stop }
}
