// Package hygiene for every published package (every non-private folder of packages/), as the
// registry will hold it. Run after `pnpm build`. Each package is packed with `pnpm pack`, and:
// - publint (package.json and files) and arethetypeswrong (the types resolve for ESM consumers);
// - the tarball's manifest: license, repository, homepage, bugs, engines that fit the runtime,
//   no development fields, no `workspace:` range, no private workspace package;
// - LICENSE and README ship, and the README has no relative link (it breaks on the registry);
// - every dist/ file is reached from the exports (no stale chunk of an older build), and every
//   script has a source map whose sources ship too;
// - jsr.json, when present, names the same package and version, and exports files that exist.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, posix } from 'node:path'
import { pack, publishedPackages, readPacked, root } from './packages.mjs'

const bin = (name) => join(root, 'node_modules', '.bin', name)

// The engines each package declares. A runtime adapter names its runtime only: npm and pnpm
// check `engines.node` alone, and a Node range on a Bun or Workers package is noise. workerd
// reads no engines at all (the Worker's compatibility date is its contract). Every other
// package runs on Node 20 and later, and may also name Bun and Deno.
const RUNTIME_ENGINES = {
  '@handshake/bun': { bun: '>=1.4.4' },
  '@handshake/deno': { deno: '>=2.9.0' },
  '@handshake/workers': {},
}
const DEFAULT_ENGINES = { node: '>=20' }
const OPTIONAL_ENGINES = ['bun', 'deno']

const rootManifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))

/** The names of the workspace's private packages (conformance, examples, bench). */
const privatePackages = new Set()
for (const folder of ['packages', 'examples']) {
  for (const name of readdirSync(join(root, folder))) {
    const file = join(root, folder, name, 'package.json')
    if (!existsSync(file)) continue
    const manifest = JSON.parse(readFileSync(file, 'utf8'))
    if (manifest.private) privatePackages.add(manifest.name)
  }
}

/** Problems with one packed package, as sentences that say what to do. */
function checkTarball(pkg, tarball, files) {
  const problems = []
  const where = `packages/${pkg.folder}`
  const has = new Set(files)
  const manifest = JSON.parse(readPacked(tarball, 'package.json'))

  // --- manifest ---
  if (manifest.license !== 'MIT') problems.push(`"license" is not "MIT" in ${where}/package.json`)
  const repositoryUrl = rootManifest.repository?.url
  if (
    manifest.repository?.url !== repositoryUrl ||
    manifest.repository?.directory !== where ||
    manifest.repository?.type !== 'git'
  ) {
    problems.push(
      `"repository" must be { "type": "git", "url": "${repositoryUrl}", "directory": "${where}" }`,
    )
  }
  if (typeof manifest.homepage !== 'string' || !manifest.homepage.startsWith('https://')) {
    problems.push('"homepage" is missing: link to the package README on the repository host')
  }
  if (manifest.bugs?.url !== rootManifest.bugs?.url) {
    problems.push(`"bugs" must be { "url": "${rootManifest.bugs?.url}" }, as in the root`)
  }
  for (const field of ['devDependencies', 'scripts']) {
    if (manifest[field]) {
      problems.push(`the packed manifest still has "${field}": .pnpmfile.cjs should remove it`)
    }
  }
  for (const field of ['dependencies', 'peerDependencies', 'optionalDependencies']) {
    for (const [name, range] of Object.entries(manifest[field] ?? {})) {
      if (String(range).startsWith('workspace:')) {
        problems.push(`${field}.${name} is still "${range}" in the tarball: pack with pnpm`)
      }
      if (privatePackages.has(name)) {
        problems.push(`${field}.${name} is a private workspace package, absent from the registry`)
      }
    }
  }
  const expected = RUNTIME_ENGINES[manifest.name] ?? DEFAULT_ENGINES
  const engines = manifest.engines ?? {}
  for (const [runtime, range] of Object.entries(expected)) {
    if (engines[runtime] !== range) {
      problems.push(`"engines.${runtime}" must be "${range}" (it is ${engines[runtime]})`)
    }
  }
  for (const runtime of Object.keys(engines)) {
    const allowed = RUNTIME_ENGINES[manifest.name] ? [] : OPTIONAL_ENGINES
    if (!(runtime in expected) && !allowed.includes(runtime)) {
      problems.push(`"engines.${runtime}" does not fit ${manifest.name}: remove it`)
    }
  }

  // --- files ---
  for (const file of ['LICENSE', 'README.md']) {
    if (!has.has(file)) problems.push(`${file} is missing from the tarball: add ${where}/${file}`)
  }
  if (has.has('README.md')) {
    const readme = readPacked(tarball, 'README.md')
    for (const [, target] of readme.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (!/^(https?:|mailto:|#)/.test(target)) {
        problems.push(
          `README.md links to "${target}", which breaks on the registry's page: use an absolute URL`,
        )
      }
    }
  }

  // Stale files: everything in dist/ must be reached from the entry points.
  const entries = new Set()
  const collect = (value) => {
    if (typeof value === 'string') entries.add(posix.normalize(value))
    else if (value && typeof value === 'object') for (const v of Object.values(value)) collect(v)
  }
  collect(manifest.exports)
  collect(manifest.types)
  collect(manifest.main)
  const reached = new Set()
  const visit = (file) => {
    if (reached.has(file) || !has.has(file)) return
    reached.add(file)
    const text = readPacked(tarball, file)
    const specifiers = [
      ...text.matchAll(/(?:from|import)\s*\(?\s*['"](\.\.?\/[^'"]+)['"]/g),
      ...text.matchAll(/sourceMappingURL=(\S+)/g),
    ].map((match) => match[1])
    for (const specifier of specifiers) {
      const target = posix.normalize(posix.join(posix.dirname(file), specifier))
      visit(target)
      if (file.endsWith('.d.ts')) visit(target.replace(/\.js$/, '.d.ts'))
    }
  }
  for (const entry of entries) visit(entry)
  for (const file of files) {
    if (file.startsWith('dist/') && !reached.has(file)) {
      problems.push(
        `${file} is reached from no entry point, a leftover of an older build: rm -rf ${where}/dist and build again`,
      )
    }
  }

  // Source maps ship with the sources they map, or neither ships.
  const scripts = files.filter((file) => file.startsWith('dist/') && file.endsWith('.js'))
  for (const script of scripts) {
    const match = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readPacked(tarball, script))
    const mapFile = match && posix.join(posix.dirname(script), match[1])
    if (!mapFile || !has.has(mapFile)) {
      problems.push(`${script} has no source map in the tarball: set sourcemap: true in tsup`)
      continue
    }
    const map = JSON.parse(readPacked(tarball, mapFile))
    for (const source of map.sources) {
      const file = posix.normalize(posix.join(posix.dirname(mapFile), source))
      if (!has.has(file)) {
        problems.push(`${mapFile} maps to ${file}, which is not in the tarball: add src to "files"`)
      }
    }
  }

  // --- JSR ---
  const jsrFile = join(pkg.dir, 'jsr.json')
  if (existsSync(jsrFile)) {
    const jsr = JSON.parse(readFileSync(jsrFile, 'utf8'))
    if (jsr.name !== manifest.name || jsr.version !== manifest.version) {
      problems.push(`jsr.json must name ${manifest.name}@${manifest.version}, as package.json does`)
    }
    const jsrExports = typeof jsr.exports === 'string' ? { '.': jsr.exports } : (jsr.exports ?? {})
    for (const [subpath, target] of Object.entries(jsrExports)) {
      if (!existsSync(join(pkg.dir, target))) {
        problems.push(`jsr.json exports "${subpath}" as ${target}, which does not exist`)
      }
      if (!(subpath in (manifest.exports ?? {}))) {
        problems.push(`jsr.json exports "${subpath}", which package.json does not export`)
      }
    }
  }
  return problems
}

const packages = publishedPackages()
const destination = mkdtempSync(join(tmpdir(), 'handshake-check-'))
let failed = false
try {
  for (const pkg of packages) {
    for (const [tool, args] of [
      ['publint', ['--strict', pkg.dir]],
      // ESM only, by design: CommonJS consumers use import().
      ['attw', ['--pack', pkg.dir, '--profile', 'esm-only', '--format', 'ascii']],
    ]) {
      try {
        execFileSync(bin(tool), args, { stdio: 'pipe', cwd: root })
      } catch (err) {
        failed = true
        console.error(`${tool} failed for ${pkg.dir}:\n${err.stdout}${err.stderr}`)
      }
    }
    const { filename, files } = pack(pkg.dir, destination)
    const problems = checkTarball(pkg, filename, files)
    if (problems.length > 0) {
      failed = true
      console.error(`${pkg.manifest.name} (packages/${pkg.folder}):`)
      for (const problem of problems) console.error(`  - ${problem}`)
    }
  }
} finally {
  rmSync(destination, { recursive: true, force: true })
}
if (failed) process.exit(1)
console.log(
  `publint, attw and the tarball checks are clean for ${packages.length} packages: ${packages.map((pkg) => pkg.manifest.name).join(', ')}`,
)
