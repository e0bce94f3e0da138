/**
 * Runs one Worker entry under Miniflare (workerd) on 127.0.0.1 and a free port, and announces
 * the port like the other entries. The entry is bundled with esbuild first, as wrangler would.
 * Usage: node host.mjs <entry.mjs>
 */
import { build } from 'esbuild'
import { Miniflare } from 'miniflare'

/** The newest date this workerd accepts; it enables the WebSocket close auto-reply. */
export const COMPATIBILITY_DATE = '2026-04-26'

const entry = process.argv[2]
const bundle = await build({
  entryPoints: [entry],
  bundle: true,
  write: false,
  format: 'esm',
  platform: 'neutral',
  conditions: ['workerd', 'worker', 'browser'],
  mainFields: ['module', 'main'],
  external: ['cloudflare:*'],
  logLevel: 'error',
})
const mf = new Miniflare({
  modules: true,
  script: bundle.outputFiles[0].text,
  host: '127.0.0.1',
  port: 0,
  compatibilityDate: COMPATIBILITY_DATE,
  // Since 2026-03-17 binary messages arrive as Blob unless a Worker sets binaryType; Hono's
  // helper then echoes the text "[object Blob]" and crossws cannot read them synchronously.
  // This flag restores ArrayBuffer for all four servers, so that the peers can be measured.
  compatibilityFlags: ['no_websocket_standard_binary_type'],
})
const url = await mf.ready
process.stdout.write(`${JSON.stringify({ port: Number(url.port) })}\n`)

async function stop() {
  await mf.dispose()
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
