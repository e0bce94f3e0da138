/**
 * The packages with a jsr.json are accepted by JSR: `deno publish --dry-run` over the Deno
 * workspace that scripts/jsr.mjs makes (type check, slow types, files). It needs no network but
 * the npm registry, or Deno's cache, for the npm imports such as hono.
 * @module
 */
import { execFile } from 'node:child_process'
import { existsSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, expect, it } from 'vitest'
// @ts-expect-error: a plain .mjs script
import { denoBinary, jsrWorkspace } from '../scripts/jsr.mjs'
// @ts-expect-error: a plain .mjs script
import { publishedPackages } from '../scripts/packages.mjs'

const run = promisify(execFile)
const folders: string[] = []

afterAll(() => {
  for (const folder of folders) rmSync(folder, { recursive: true, force: true })
})

it('deno publish --dry-run accepts every package that has a jsr.json', async () => {
  const folder: string = jsrWorkspace()
  folders.push(folder)
  const { stderr } = await run(
    denoBinary(),
    ['publish', '--dry-run', '--allow-dirty', '--sloppy-imports'],
    { cwd: folder, env: { ...process.env, NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1' } },
  ).catch((err: { stdout: string; stderr: string }) => {
    throw new Error(`deno publish --dry-run failed:\n${err.stdout}\n${err.stderr}`)
  })
  expect(stderr).toMatch(/Dry run complete/)
  const members = (publishedPackages() as { dir: string; manifest: { name: string } }[]).filter(
    (pkg) => existsSync(join(pkg.dir, 'jsr.json')),
  )
  expect(members.length).toBeGreaterThan(0)
  for (const pkg of members) {
    expect(stderr).toContain(`Simulating publish of ${pkg.manifest.name}@`)
  }
}, 120_000)
