/**
 * Starts the test app (`app.ts`) on each of the four runtimes: Node in this process, Bun and Deno
 * (`server.ts`) from the binaries the adapter packages' devDependencies bring, in a child process
 * stopped with SIGKILL, and workerd (`worker.ts`, one Durable Object) through Miniflare.
 * @module
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startServerProcess } from '@handshake/conformance'
import { serve } from '@handshake/node'
import { bundleWorker, startWorker } from '../../adapter-workers/test/miniflare.js'
import { createChannelsApp, useFeedHistory } from './app.js'
import type { RunningApp } from './suite.js'

/** A runtime the test app runs on. */
export type Runtime = 'node' | 'bun' | 'deno' | 'workerd'

/** Every runtime, for `describe.each`. */
export const RUNTIMES: readonly Runtime[] = ['node', 'bun', 'deno', 'workerd']

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
export async function startRuntime(runtime: Runtime): Promise<RunningApp> {
  if (runtime === 'node') {
    const server = await serve(createChannelsApp(), { port: 0, onListen() {} })
    useFeedHistory(server.topics)
    return {
      url: `http://127.0.0.1:${server.address.port}`,
      stop: () => server.shutdown({ timeout: 1000 }),
    }
  }
  if (runtime === 'workerd') {
    const worker = await startWorker({
      script: await bundleWorker('../../client/test/worker.ts'),
      durableObjects: { CHANNELS: 'ChannelsObject' },
    })
    return { url: worker.url, stop: worker.stop }
  }
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
