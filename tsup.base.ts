/**
 * The build every published package shares: ESM, declarations, and source maps into `src/`
 * (which ships with `dist/`), so that stack traces name our files and lines.
 */
import { defineConfig, type Options } from 'tsup'

/** The shared tsup config, with a package's own additions (more entries, externals). */
export function packageConfig(options: Options = {}) {
  return defineConfig({
    entry: ['src/index.ts'],
    format: ['esm'],
    dts: true,
    sourcemap: true,
    clean: true,
    target: 'es2022',
    ...options,
  })
}
