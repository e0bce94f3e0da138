// The example's build: bundles the page's script (src/browser.ts, with @handshake/client) for the
// browser into dist/browser.js, as a string the app serves at /chat.js: a module, not a file read
// at run time, so that every runtime has it, Workers included.
import { mkdirSync, writeFileSync } from 'node:fs'
import { build } from 'esbuild'

const { outputFiles } = await build({
  entryPoints: [new URL('src/browser.ts', import.meta.url).pathname],
  bundle: true,
  format: 'esm',
  target: 'es2022',
  minify: true,
  write: false,
})
mkdirSync(new URL('dist', import.meta.url), { recursive: true })
const script = JSON.stringify(outputFiles[0].text)
writeFileSync(new URL('dist/browser.js', import.meta.url), `export const CHAT_JS = ${script}\n`)
writeFileSync(new URL('dist/browser.d.ts', import.meta.url), 'export const CHAT_JS: string\n')
