// Package hygiene for every published package: publint (package.json and files) and
// arethetypeswrong (the types resolve for ESM consumers). Run after `pnpm build`.
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

const root = join(import.meta.dirname, '..')
const bin = (name) => join(root, 'node_modules', '.bin', name)
const packages = readdirSync(join(root, 'packages'))
  .map((dir) => join(root, 'packages', dir))
  .filter((dir) => !JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).private)

let failed = false
for (const dir of packages) {
  for (const [tool, args] of [
    ['publint', ['--strict', dir]],
    // ESM only, by design: CommonJS consumers use import().
    ['attw', ['--pack', dir, '--profile', 'esm-only', '--format', 'ascii']],
  ]) {
    try {
      execFileSync(bin(tool), args, { stdio: 'pipe', cwd: root })
    } catch (err) {
      failed = true
      console.error(`${tool} failed for ${dir}:\n${err.stdout}${err.stderr}`)
    }
  }
}
if (failed) process.exit(1)
console.log(`publint and attw are clean for ${packages.length} packages`)
