import { defineConfig } from 'tsup'

export default defineConfig({
  entry: ['src/index.ts', 'src/testing.ts'],
  format: ['esm'],
  dts: true,
  // Maps into src/, which ships with dist/: stack traces name our files and lines.
  sourcemap: true,
  clean: true,
  target: 'es2022',
})
