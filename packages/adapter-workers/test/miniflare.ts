/**
 * Starts the test Worker in real workerd through Miniflare, on a free 127.0.0.1 port, with
 * everything offline: no `Request.cf` fetch, no telemetry. workerd's own output is kept so that
 * tests can assert what it logged.
 * @module
 */
import { createRequire } from 'node:module'
import type { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { Log, LogLevel, Miniflare } from 'miniflare'

/** The newest compatibility date that the pinned workerd supports. */
export const COMPATIBILITY_DATE = '2026-04-26'

/** A running Worker. */
export interface RunningWorker {
  /** `http://127.0.0.1:PORT` */
  url: string
  /** Everything workerd wrote to stdout and stderr so far. */
  output(): string
  stop(): Promise<void>
}

// esbuild comes with wrangler; resolve it from there rather than depend on it twice.
const requireFromWrangler = createRequire(createRequire(import.meta.url).resolve('wrangler'))
const esbuild = requireFromWrangler('esbuild') as {
  build(options: Record<string, unknown>): Promise<{ outputFiles: { text: string }[] }>
}

/**
 * Bundles a test Worker (`test/worker.ts` by default; the adapter from source, hono and the core
 * from dist) into one module.
 */
export async function bundleWorker(entry = './worker.ts'): Promise<string> {
  const result = await esbuild.build({
    entryPoints: [fileURLToPath(new URL(entry, import.meta.url))],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    conditions: ['workerd', 'worker', 'browser'],
    target: 'es2022',
    // workerd's built-in module (the Durable Object base class).
    external: ['cloudflare:workers'],
    write: false,
    logLevel: 'silent',
  })
  return result.outputFiles[0]!.text
}

/** Starts the bundled Worker in workerd. */
export async function startWorker(
  options: {
    compatibilityDate?: string
    script?: string
    /** Durable Object bindings: binding name to the class the script exports. */
    durableObjects?: Record<string, string>
    /** The classes among them on the older key-value storage, not SQLite. */
    keyValueClasses?: readonly string[]
    /**
     * A folder that keeps the objects' storage after `stop()`: a worker started again on it
     * finds what the objects stored, in objects built anew (an eviction of every object).
     */
    persist?: string
  } = {},
): Promise<RunningWorker> {
  let output = ''
  const mf = new Miniflare({
    modules: true,
    script: options.script ?? (await bundleWorker()),
    host: '127.0.0.1',
    port: 0,
    compatibilityDate: options.compatibilityDate || COMPATIBILITY_DATE,
    durableObjects: Object.fromEntries(
      Object.entries(options.durableObjects ?? {}).map(([binding, className]) => [
        binding,
        { className, useSQLite: !options.keyValueClasses?.includes(className) },
      ]),
    ),
    ...(options.persist ? { durableObjectsPersist: options.persist } : {}),
    cf: false,
    telemetry: { enabled: false },
    log: new Log(LogLevel.WARN),
    handleRuntimeStdio(stdout: Readable, stderr: Readable) {
      stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString()
      })
      stderr.on('data', (chunk: Buffer) => {
        output += chunk.toString()
      })
    },
  })
  let url: URL
  try {
    url = await mf.ready
  } catch (err) {
    await mf.dispose().catch(() => {})
    throw new Error(`workerd did not start:\n${output}`, { cause: err })
  }
  return {
    url: url.origin,
    output: () => output,
    stop: () => mf.dispose(),
  }
}
