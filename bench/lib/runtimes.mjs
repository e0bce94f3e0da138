/**
 * The four runtimes and their four servers each: the raw runtime server (the limit), Hono's own
 * helper, crossws, and Handshake. Binaries come from the adapter packages' dependencies, never
 * from the PATH.
 */
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const benchDir = join(dirname(fileURLToPath(import.meta.url)), '..')
export const rootDir = join(benchDir, '..')

/** The native binary a package ships, or undefined when it is not installed. */
function packageBinary(adapter, relative) {
  const path = join(rootDir, 'packages', adapter, 'node_modules', relative)
  return existsSync(path) ? path : undefined
}

/**
 * The server kinds, in the order of every table. `events` is Handshake with an event controller
 * (`servers/echo-events-app.mjs`); `handshake` is its `serve` loop.
 */
export const KINDS = ['raw', 'hono', 'crossws', 'handshake', 'events']

/** What each kind is called in the tables. */
export const KIND_NAMES = {
  hono: 'Hono',
  crossws: 'crossws',
  handshake: 'Handshake',
  events: 'Handshake (events)',
}

/**
 * The runtimes. `command(entry)` gives the command line of one server entry; `missing` says why
 * the runtime cannot run here, when it cannot.
 */
export function runtimes() {
  const bun = packageBinary('adapter-bun', 'bun/bin/bun.exe')
  const deno = packageBinary('adapter-deno', 'deno/deno')
  return [
    {
      id: 'node',
      name: 'Node',
      idleConns: 10_000,
      rawName: '`ws`',
      honoName: '`@hono/node-server` upgradeWebSocket',
      adapter: 'adapter-node',
      command: (entry) => [process.execPath, ['--expose-gc', entry]],
      entry: (kind) => `servers/node/${kind}.mjs`,
      heap: true,
    },
    {
      id: 'bun',
      name: 'Bun',
      idleConns: 10_000,
      rawName: '`Bun.serve`',
      honoName: '`hono/bun` upgradeWebSocket',
      adapter: 'adapter-bun',
      missing: bun ? undefined : 'the bun package of @handshake/bun is not installed',
      command: (entry) => [bun, [entry]],
      entry: (kind) => `servers/bun/${kind}.ts`,
      heap: true,
    },
    {
      id: 'deno',
      name: 'Deno',
      idleConns: 10_000,
      rawName: '`Deno.upgradeWebSocket`',
      honoName: '`hono/deno` upgradeWebSocket',
      adapter: 'adapter-deno',
      missing: deno ? undefined : 'the deno package of @handshake/deno is not installed',
      command: (entry) => [
        deno,
        [
          'run',
          '--allow-net=127.0.0.1',
          '--allow-read',
          '--allow-env',
          '--v8-flags=--expose-gc',
          '--no-lock',
          '--node-modules-dir=manual',
          entry,
        ],
      ],
      env: { DENO_NO_UPDATE_CHECK: '1', DENO_NO_PROMPT: '1' },
      entry: (kind) => `servers/deno/${kind}.ts`,
      heap: true,
    },
    {
      id: 'workers',
      name: 'workerd',
      // workerd holds 5,000 here comfortably; the issue allows it to stop there.
      idleConns: 5_000,
      rawName: 'bare `WebSocketPair` Worker',
      honoName: '`hono/cloudflare-workers` upgradeWebSocket',
      adapter: 'adapter-workers',
      command: (entry) => [process.execPath, ['servers/workers/host.mjs', entry]],
      entry: (kind) => `servers/workers/${kind}.mjs`,
      // workerd gives no way to read the isolate's heap from outside: RSS only.
      heap: false,
      startTimeoutMs: 40_000,
    },
  ]
}

/** Why Handshake's adapter for a runtime cannot run yet, or undefined when it can. */
export function adapterMissing(runtime) {
  const dist = join(rootDir, 'packages', runtime.adapter, 'dist', 'index.js')
  if (!existsSync(dist)) return `@handshake/${runtime.id} is not built (no dist/index.js)`
  return undefined
}

/** The server's display name. */
export function serverName(runtime, kind) {
  if (kind === 'raw') return `raw (${runtime.rawName})`
  if (kind === 'hono') return `Hono (${runtime.honoName})`
  return KIND_NAMES[kind]
}

/** A package's version, read from the bench's or the repo's node_modules. */
export function versionOf(name) {
  for (const base of [benchDir, rootDir]) {
    try {
      return JSON.parse(readFileSync(join(base, 'node_modules', name, 'package.json'), 'utf8'))
        .version
    } catch {
      // not installed there
    }
  }
  return 'not installed'
}
