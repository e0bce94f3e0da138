import { defineConfig } from 'tsup'

export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm'],
  dts: true,
  // Maps into src/, which ships with dist/: stack traces name our files and lines.
  sourcemap: true,
  clean: true,
  target: 'es2022',
  // workerd's built-in module: the Worker's bundler (wrangler) or workerd resolves it.
  external: ['cloudflare:workers'],
})
