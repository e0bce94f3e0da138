/**
 * Shutdown with a Redis backplane, on Node:
 * - the server's own shutdown closes its hub's backplane (nothing of ours is left open), and
 *   leaves the app's client to the app;
 * - the README's entry, run as a new user runs it (tsx), with each client and a real
 *   redis-server: Ctrl-C closes every connection with 1001 and the process ends; the shutdown
 *   says that it waits, and for how long; a second Ctrl-C ends it at once.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { Hono } from 'hono'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { serve } from '../../adapter-node/src/index.js'
import { RawPeer } from '../../conformance/src/raw-peer.js'
import { freePort, type RedisServer, startRedis } from '../../conformance/src/redis-server.js'
import { redisBackplane } from '../src/index.js'
import { appClient, CLIENT_KINDS, until } from './fixtures.js'

const here = dirname(fileURLToPath(import.meta.url))
const packageDir = join(here, '..')
// tsx's loader, in this process's Node: what `npx tsx` runs, without its wrapper process, so
// that a signal reaches the entry itself.
const tsx = pathToFileURL(
  join(packageDir, '..', 'adapter-node', 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs'),
).href
const nodeAdapter = join(packageDir, '..', 'adapter-node', 'dist', 'index.js')

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
})

/** The subscriber connections Redis holds (the backplanes' own). */
async function pubsubClients(): Promise<number> {
  const list = String(await redis.command('CLIENT', 'LIST', 'TYPE', 'pubsub'))
  return list.split('\n').filter((line) => line.includes('id=')).length
}

describe.each(CLIENT_KINDS)('shutdown with a Redis backplane, with %s', (kind) => {
  it("the server's shutdown closes its hub's backplane, and leaves the app's client open", async () => {
    const app = await appClient(kind, redis.url)
    const before = await pubsubClients()
    const server = await serve(new Hono(), { port: 0, hostname: '127.0.0.1' })
    try {
      const backplane = redisBackplane({ client: app.client })
      await server.topics.useBackplane(backplane)
      await backplane.subscribe('held')
      expect(await pubsubClients()).toBe(before + 1)
      await server.shutdown()
      expect(backplane.healthy).toBe(false)
      await until(async () => (await pubsubClients()) === before, 2000, 'the subscriber to close')
      // The app's client stays the app's.
      await expect(app.client.ping()).resolves.toBe('PONG')
    } finally {
      await server.shutdown()
      await app.close()
    }
  })

  describe("the README's entry", () => {
    let dir = ''
    beforeAll(() => {
      // The README's snippets, as a new user copies them: its entry for this client, and the
      // rooms it imports. Only the Node adapter is resolved to this workspace's build.
      const readme = readFileSync(join(packageDir, 'README.md'), 'utf8')
      const snippets = [...readme.matchAll(/```ts\n(\/\/ ([\w.]+)\n[\s\S]*?)```/g)].map(
        ([, code = '', file = '']) => ({ code, file }),
      )
      const entry = snippets.find(
        ({ code, file }) =>
          file === 'backplane.ts' &&
          code.includes(kind === 'ioredis' ? "from 'ioredis'" : "from 'redis'"),
      )
      const rooms = snippets.find(({ file }) => file === 'rooms.ts')
      expect(entry, 'the README has an entry for this client').toBeDefined()
      expect(rooms, 'the README has rooms.ts').toBeDefined()
      // Under the package, for hono, the clients and @handshake/redis (the package's own name);
      // .scratch is not committed.
      dir = join(packageDir, '.scratch', `entry-${kind}-${process.pid}`)
      mkdirSync(dir, { recursive: true })
      writeFileSync(
        join(dir, 'backplane.ts'),
        entry!.code.replaceAll("'@handshake/node'", JSON.stringify(nodeAdapter)),
      )
      writeFileSync(join(dir, 'rooms.ts'), rooms!.code)
    })
    afterAll(() => {
      if (dir) rmSync(dir, { recursive: true, force: true })
    })

    /** Starts the entry on a free port; resolves once it listens. */
    async function start(): Promise<{ child: ChildProcess; port: number; output: () => string }> {
      const port = await freePort()
      const child = spawn(process.execPath, ['--import', tsx, 'backplane.ts'], {
        cwd: dir,
        env: { ...process.env, PORT: String(port), REDIS_URL: redis.url, NODE_OPTIONS: '' },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let output = ''
      child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
        output += chunk
      })
      child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
        output += chunk
      })
      await until(
        () => {
          if (child.exitCode !== null) throw new Error(`The entry exited:\n${output}`)
          return /Listening on/.test(output)
        },
        20_000,
        'the entry to listen',
      )
      return { child, port, output: () => output }
    }

    /** Resolves with how long the process took to exit, or 'running' after `ms`. */
    async function exitWithin(child: ChildProcess, ms: number): Promise<number | 'running'> {
      const started = Date.now()
      const exited = once(child, 'exit').then(() => Date.now() - started)
      const timer = new Promise<'running'>((resolve) =>
        setTimeout(() => resolve('running'), ms).unref(),
      )
      return Promise.race([exited, timer])
    }

    it('Ctrl-C closes every connection with 1001, and the process ends', async () => {
      const { child, port, output } = await start()
      try {
        const peer = await RawPeer.connect(`http://127.0.0.1:${port}`, '/rooms/lobby')
        child.kill('SIGINT')
        expect((await peer.closeFrame)?.code, output()).toBe(1001)
        const took = await exitWithin(child, 10_000)
        expect(took, `still running 10 s after SIGINT:\n${output()}`).not.toBe('running')
        expect(child.exitCode, output()).toBe(0)
        expect(output()).toMatch(/Shutting down: waiting up to 10 s/)
      } finally {
        child.kill('SIGKILL')
      }
    })

    it('a second Ctrl-C ends it at once, while a peer holds the shutdown', async () => {
      const { child, port, output } = await start()
      try {
        // A peer that never answers the close frame: the shutdown waits for it, up to 10 s.
        const peer = await RawPeer.connect(`http://127.0.0.1:${port}`, '/rooms/lobby', {
          answerClose: false,
        })
        child.kill('SIGINT')
        expect((await peer.closeFrame)?.code).toBe(1001)
        await until(() => /Shutting down: waiting up to 10 s/.test(output()), 5000, 'the line')
        expect(await exitWithin(child, 500), 'exited before the deadline').toBe('running')
        child.kill('SIGINT')
        const took = await exitWithin(child, 2000)
        expect(took, `still running after a second SIGINT:\n${output()}`).not.toBe('running')
      } finally {
        child.kill('SIGKILL')
      }
    })
  })
})
