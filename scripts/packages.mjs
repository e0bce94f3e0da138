// The packages this repository publishes, and their tarballs as `pnpm pack` makes them.
// Shared by scripts/check-packages.mjs and the pack-and-install test, so that both cover
// every non-private folder of packages/ without a list to keep up to date.
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

export const root = join(import.meta.dirname, '..')

/**
 * Every package of packages/ that is not private, in folder order.
 * @returns {{ dir: string, folder: string, manifest: Record<string, any> }[]}
 */
export function publishedPackages() {
  return readdirSync(join(root, 'packages'), { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => {
      const dir = join(root, 'packages', entry.name)
      let manifest
      try {
        manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
      } catch {
        return undefined
      }
      return { dir, folder: entry.name, manifest }
    })
    .filter((pkg) => pkg !== undefined && !pkg.manifest.private)
}

/**
 * Packs one package with `pnpm pack` (so `workspace:` ranges are replaced and the root
 * .pnpmfile.cjs shapes the manifest, as on publish).
 * @returns {{ filename: string, files: string[] }} the tarball's path and the files it holds
 */
export function pack(dir, destination) {
  const output = execFileSync('pnpm', ['pack', '--json', '--pack-destination', destination], {
    cwd: dir,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  // Lifecycle output may precede the JSON result.
  const result = JSON.parse(output.slice(output.indexOf('{')))
  return { filename: result.filename, files: result.files.map((file) => file.path) }
}

/** One file of a packed tarball, as text. */
export function readPacked(tarball, path) {
  return execFileSync('tar', ['-xOzf', tarball, `package/${path}`], { encoding: 'utf8' })
}
