// Publishes to JSR every package that has a jsr.json: `node scripts/jsr.mjs [--dry-run]`.
//
// JSR publishes TypeScript sources, and an adapter must import `jsr:@handshake/core`, not the
// npm copy. Deno links packages that way only inside a Deno workspace, and a deno.json in this
// repository would change how every Deno run here resolves its imports. So the workspace is made
// in a temporary folder: each package's jsr.json, src/, README.md and LICENSE, and a root
// deno.json that maps every other import to the npm range its package.json declares.
import { execFileSync } from 'node:child_process'
import { cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { publishedPackages, root } from './packages.mjs'

/** The Deno binary of @handshake/deno's `deno` devDependency. */
export function denoBinary() {
  const require = createRequire(join(root, 'packages', 'adapter-deno', 'package.json'))
  return join(dirname(require.resolve('deno/package.json')), 'deno')
}

/** Makes the Deno workspace in a new temporary folder, and returns that folder. */
export function jsrWorkspace() {
  const members = publishedPackages().filter((pkg) => existsSync(join(pkg.dir, 'jsr.json')))
  const names = new Set(members.map((pkg) => pkg.manifest.name))
  const folder = mkdtempSync(join(tmpdir(), 'handshake-jsr-'))
  const imports = {}
  for (const pkg of members) {
    for (const file of ['jsr.json', 'src', 'README.md', 'LICENSE']) {
      cpSync(join(pkg.dir, file), join(folder, pkg.folder, file), { recursive: true })
    }
    // Ranges for users win over the pinned versions of development.
    const { devDependencies = {}, dependencies = {}, peerDependencies = {} } = pkg.manifest
    for (const [name, range] of Object.entries({
      ...devDependencies,
      ...dependencies,
      ...peerDependencies,
    })) {
      if (names.has(name) || String(range).startsWith('workspace:')) continue
      imports[name] = `npm:${name}@${range}`
    }
  }
  const workspace = members.map((pkg) => `./${pkg.folder}`)
  writeFileSync(join(folder, 'deno.json'), `${JSON.stringify({ workspace, imports }, null, 2)}\n`)
  return folder
}

if (import.meta.filename === process.argv[1]) {
  const folder = jsrWorkspace()
  try {
    // --sloppy-imports: the sources import `./conn.js` for `conn.ts`, as Node's resolution
    // wants; publishing rewrites them to the files JSR holds.
    execFileSync(
      denoBinary(),
      ['publish', '--allow-dirty', '--sloppy-imports', ...process.argv.slice(2)],
      { cwd: folder, stdio: 'inherit', env: { ...process.env, DENO_NO_UPDATE_CHECK: '1' } },
    )
  } finally {
    rmSync(folder, { recursive: true, force: true })
  }
}
