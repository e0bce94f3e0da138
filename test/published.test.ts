/**
 * The first hour of a new user, as a test. Every published package is packed with `pnpm pack`
 * and installed with npm, from the tarballs, into a fresh project made as the READMEs say
 * (`npm init -y`, `"type": "module"`, `npx tsc --init`). Then:
 *
 * - every TypeScript snippet of the READMEs is written out as the file its first line names
 *   (`// server.ts`), and type-checked with the `tsc --init` settings, strict, `skipLibCheck`
 *   off, under both `nodenext` and `bundler` resolution; the Deno README's with `deno check`;
 * - the README test files run in vitest, against the packed test kit;
 * - the Node entry files run in tsx, the Bun ones in Bun and the Deno one in Deno: each echoes
 *   over a real `ws` client, and its signal handling is asserted (SIGINT closes with 1001).
 *
 * Only the npm registry (or npm's cache) is needed, for hono, ws, typescript and the like.
 *
 * It costs about two minutes of CPU, most of it tsc with skipLibCheck off; the checks run side
 * by side, and the timeouts leave room for a machine that is busy with the rest of the suite.
 * @module
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { createRequire } from 'node:module'
import { connect as connectTcp, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
// @ts-expect-error: a plain .mjs script, shared with scripts/check-packages.mjs
import { pack, publishedPackages, root } from '../scripts/packages.mjs'

const run = promisify(execFile)

// --- the READMEs ---

interface Snippet {
  /** Where it comes from, for messages: `packages/adapter-node/README.md:42`. */
  readonly source: string
  /** The file it names on its first line: `// server.ts` or `// src/worker.ts: comment`. */
  readonly file: string
  /** The command after the file name, when the first line gives one: `npx tsx server.ts`. */
  readonly command: string | undefined
  readonly code: string
}

interface Readme {
  /** A folder name for its snippets: `root`, or the package folder. */
  readonly label: string
  readonly path: string
  /** How its snippets are type-checked: tsc, or `deno check` for a Deno-only package. */
  readonly checker: 'tsc' | 'deno'
  readonly snippets: Snippet[]
  /** Code blocks that name no file, which this test cannot place. */
  readonly unnamed: string[]
  /** Every JSON block, parsed by the test. */
  readonly json: { source: string; text: string }[]
}

/** A fenced block, at the top level or indented in a list item. */
const FENCE = /^( *)(`{3,})(\w*)[^\n]*\n([\s\S]*?)^\1\2[ \t]*$/gm
const FILE_LINE = /^\/\/ ([\w./-]+\.ts)(?:: ((?:npx tsx|bun run|deno run) [^\n]+))?/

function readReadme(label: string, path: string, checker: Readme['checker']): Readme {
  const text = readFileSync(path, 'utf8')
  const snippets: Snippet[] = []
  const unnamed: string[] = []
  const json: Readme['json'] = []
  for (const match of text.matchAll(FENCE)) {
    const [, indent, , lang, indented] = match as unknown as [
      string,
      string,
      string,
      string,
      string,
    ]
    const code = indented.replace(new RegExp(`^${indent}`, 'gm'), '')
    const line = text.slice(0, match.index).split('\n').length
    const source = `${relative(root, path)}:${line}`
    if (lang === 'json') json.push({ source, text: code })
    if (lang !== 'ts' && lang !== 'typescript') continue
    const [, file, command] = FILE_LINE.exec(code) ?? []
    if (file) snippets.push({ source, file, command, code })
    else unnamed.push(source)
  }
  return { label, path, checker, snippets, unnamed, json }
}

const packages = publishedPackages() as {
  dir: string
  folder: string
  manifest: { name: string; engines?: Record<string, string> }
}[]

const readmes: Readme[] = [
  readReadme('root', join(root, 'README.md'), 'tsc'),
  ...packages.map((pkg) => {
    const engines = pkg.manifest.engines ?? {}
    const denoOnly = 'deno' in engines && !('node' in engines)
    return readReadme(pkg.folder, join(pkg.dir, 'README.md'), denoOnly ? 'deno' : 'tsc')
  }),
]

/** The app every entry file imports: the root README's `// app.ts`. */
const rootApp = readmes[0]!.snippets.find((snippet) => snippet.file === 'app.ts')

// --- versions: the workspace's own, so the test needs nothing new from the registry ---

function workspaceVersion(name: string): string {
  for (const manifestPath of [
    join(root, 'package.json'),
    ...packages.map((pkg) => join(pkg.dir, 'package.json')),
    join(root, 'packages', 'conformance', 'package.json'),
  ]) {
    if (!existsSync(manifestPath)) continue
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'))
    const range = manifest.devDependencies?.[name] ?? manifest.dependencies?.[name]
    if (range && !range.startsWith('workspace:')) return `${name}@${range}`
  }
  throw new Error(`No workspace package depends on ${name}: pin it in test/published.test.ts`)
}

const DEPENDENCIES = ['hono', 'ws', '@types/ws', 'typescript', '@types/bun', 'vitest'].map(
  workspaceVersion,
)
/**
 * Not the workspace's: tsx is none of its dependencies, and `npm install @types/node` gives a
 * newer major than the workspace's 20, which @types/bun's own types need.
 */
const OTHERS = ['tsx@4.23.15', '@types/node@26']

/** `name` of `name@range`. */
const nameOf = (spec: string) => spec.slice(0, spec.lastIndexOf('@'))

/**
 * What else the snippets import, and the packages' peers, at the workspace's version:
 * `@hono/node-server` for a server of your own, the Redis clients of @handshake/redis, the
 * Workers types.
 */
function snippetImports(): string[] {
  const provided = new Set([
    ...packages.map((pkg) => pkg.manifest.name),
    ...[...DEPENDENCIES, ...OTHERS].map(nameOf),
    'bun',
  ])
  const names = new Set<string>()
  for (const snippet of readmes.flatMap((readme) => readme.snippets)) {
    for (const [, specifier = ''] of snippet.code.matchAll(/from '([^.'][^']*)'/g)) {
      if (specifier.startsWith('node:')) continue
      const parts = specifier.split('/')
      const name = specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] ?? '')
      if (!provided.has(name)) names.add(name)
    }
  }
  // And the optional peers: the runtime types packages the READMEs ask for.
  for (const pkg of packages) {
    const peers = (pkg.manifest as { peerDependencies?: Record<string, string> }).peerDependencies
    for (const name of Object.keys(peers ?? {})) if (!provided.has(name)) names.add(name)
  }
  return [...names].map(workspaceVersion)
}

// --- the project ---

/** This process's environment without what vitest sets for itself, for the children. */
function userEnvironment(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { NO_COLOR: '1', FORCE_COLOR: '0', ...extra }
  for (const [key, value] of Object.entries(process.env)) {
    if (/^(VITEST|TEST$|NODE_ENV$|NODE_OPTIONS$|FORCE_COLOR$)/.test(key)) continue
    env[key] ??= value
  }
  return env
}

let project = ''
let tarballs: string[] = []
/** `snippet.source` of each file written, by its path in the project. */
const written = new Map<string, string>()

function bin(name: string): string {
  return join(project, 'node_modules', '.bin', name)
}

/** Runs a command in the project; a failure's message holds its whole output. */
async function sh(command: string, args: string[], cwd = project, timeout = 300_000) {
  try {
    return await run(command, args, {
      cwd,
      timeout,
      maxBuffer: 16 * 1024 * 1024,
      env: userEnvironment({ npm_config_update_notifier: 'false' }),
    })
  } catch (err) {
    const { stdout = '', stderr = '' } = err as { stdout?: string; stderr?: string }
    throw new Error(`${command} ${args.join(' ')} failed:\n${stdout}\n${stderr}`)
  }
}

/** Writes each README's snippets under `readme/<label>/`, and the app beside every entry. */
function writeSnippets(): void {
  for (const readme of readmes) {
    const folder = join(project, 'readme', readme.label)
    for (const snippet of readme.snippets) {
      // Alternatives of one file (`// server.ts` twice) become server.ts, server.2.ts...
      let target = join(folder, snippet.file)
      for (let n = 2; existsSync(target); n++) {
        target = join(folder, snippet.file.replace(/\.ts$/, `.${n}.ts`))
      }
      mkdirSync(dirname(target), { recursive: true })
      writeFileSync(target, snippet.code)
      written.set(target, snippet.source)
    }
    // An entry file imports the app beside it: the README's own `// app.ts`, or the root one.
    for (const [file] of [...written].filter(([file]) => file.startsWith(`${folder}/`))) {
      const code = readFileSync(file, 'utf8')
      const app = join(dirname(file), 'app.ts')
      if (/from '\.\/app\.(js|ts)'/.test(code) && !existsSync(app)) {
        const own = readme.snippets.find((snippet) => snippet.file === 'app.ts')
        writeFileSync(app, (own ?? rootApp!).code)
        written.set(app, (own ?? rootApp!).source)
      }
    }
  }
}

/**
 * Packages whose types need a runtime's own types in the project, and how such a project is
 * set up (as their READMEs say). Their snippets and entry points are checked in a program of
 * their own, under `bundler` resolution, the runtime's own: Bun's types (all of Bun's and Node's)
 * cost as much as everything else, and Workers' replace the browser's and Node's globals.
 * Every other package is checked with Node's types, under both resolutions.
 */
const ENVIRONMENTS: Record<string, { name: string; compilerOptions: object }> = {
  // No DOM library: a Bun project's own settings (`bun init`), where the DOM's names
  // (`HeadersInit`...) do not exist.
  '@handshake/bun': { name: 'bun', compilerOptions: { lib: ['esnext'], types: ['bun'] } },
  '@handshake/workers': {
    name: 'workers',
    compilerOptions: { lib: ['esnext'], types: ['@cloudflare/workers-types'] },
  },
}

/**
 * The programs that writeTsconfigs() writes, `tsconfig.<name>.json`, each with skipLibCheck off.
 * `node.esnext` is Node's entry points alone with `--lib esnext` and Node's types, no DOM library:
 * the declarations must not need it.
 */
const STRICT_PROGRAMS = [
  'node.nodenext',
  'node.bundler',
  'node.esnext',
  ...new Set(Object.values(ENVIRONMENTS).map((env) => `${env.name}.bundler`)),
]

function environmentOf(folder: string): string {
  const pkg = packages.find((p) => p.folder === folder)
  return (pkg && ENVIRONMENTS[pkg.manifest.name]?.name) ?? 'node'
}

/**
 * The tsconfigs, on top of `tsc --init`'s: with `skipLibCheck` off, the apps and every entry
 * point of every package, one program per environment and resolution (see ENVIRONMENTS); with
 * `skipLibCheck` on (as `tsc --init` has it), the README test files, whose vitest types are not
 * ours to check, and Bun's snippets under `nodenext`.
 */
function writeTsconfigs(): void {
  const deno = readmes.filter((r) => r.checker === 'deno').map((r) => `readme/${r.label}`)
  const bundler = { module: 'preserve', moduleResolution: 'bundler' }
  const environments = new Map<string, object>([['node', {}]])
  for (const env of Object.values(ENVIRONMENTS)) environments.set(env.name, env.compilerOptions)
  for (const [name, compilerOptions] of environments) {
    // Every export of every package, so that each published .d.ts is checked, used or not.
    const entries = packages
      .filter((pkg) => environmentOf(pkg.folder) === name)
      .flatMap((pkg) =>
        Object.keys((pkg.manifest as { exports?: object }).exports ?? { '.': '' }).map(
          (subpath, index) =>
            `export type * as ${pkg.folder.replace(/\W/g, '_')}_${index} from '${pkg.manifest.name}${subpath.slice(1)}'\n`,
        ),
      )
    writeFileSync(join(project, `entries.${name}.ts`), entries.join(''))
    const folders = readmes
      .filter(
        (r) =>
          r.checker === 'tsc' && (r.label === 'root' ? 'node' : environmentOf(r.label)) === name,
      )
      .map((r) => `readme/${r.label}/**/*.ts`)
    if (STRICT_PROGRAMS.includes(`${name}.esnext`)) {
      writeFileSync(
        join(project, `tsconfig.${name}.esnext.json`),
        JSON.stringify({
          extends: './tsconfig.json',
          include: [`entries.${name}.ts`],
          compilerOptions: {
            skipLibCheck: false,
            noEmit: true,
            lib: ['esnext'],
            types: [name],
            ...compilerOptions,
          },
        }),
      )
    }
    for (const resolution of ['nodenext', 'bundler']) {
      if (!STRICT_PROGRAMS.includes(`${name}.${resolution}`)) continue
      writeFileSync(
        join(project, `tsconfig.${name}.${resolution}.json`),
        JSON.stringify({
          extends: './tsconfig.json',
          include: [`entries.${name}.ts`, ...folders],
          exclude: [...deno, 'readme/**/*.test.ts'],
          compilerOptions: {
            skipLibCheck: false,
            noEmit: true,
            ...(resolution === 'bundler' ? bundler : {}),
            ...compilerOptions,
          },
        }),
      )
    }
  }
  writeFileSync(
    join(project, 'tsconfig.loose.json'),
    JSON.stringify({
      extends: './tsconfig.json',
      include: [
        'readme/**/*.test.ts',
        ...readmes
          .filter((r) => environmentOf(r.label) === 'bun')
          .map((r) => `readme/${r.label}/**/*.ts`),
      ],
      compilerOptions: { noEmit: true },
    }),
  )
}

/**
 * Runs tsc on one tsconfig; a failure lists its errors, each with its README line. Errors in a
 * file under one of `othersFolders` are not ours and are left out; any other error fails.
 */
async function tsc(tsconfig: string, othersFolders: string[] = []): Promise<void> {
  try {
    await run(bin('tsc'), ['-p', tsconfig], { cwd: project, maxBuffer: 16 * 1024 * 1024 })
  } catch (err) {
    const { stdout = '', stderr = '' } = err as { stdout?: string; stderr?: string }
    const errors = (stdout + stderr)
      .split(/\n(?=\S)/)
      .filter((error) => error.trim() && !othersFolders.some((folder) => error.startsWith(folder)))
    if (errors.length > 0) throw new Error(`tsc -p ${tsconfig}:\n${explain(errors.join('\n'))}`)
  }
}

/**
 * What a program's dependencies get wrong themselves: hono's WebSocket helper types name the
 * DOM's `MessageEvent<T>` and `BinaryType`, which Node's types lack, so any Hono project on Node
 * with `--lib esnext` and skipLibCheck off gets those errors, with or without Handshake.
 */
const OTHERS_ERRORS: Record<string, string[]> = {
  'node.esnext': ['node_modules/hono/dist/types/helper/websocket/'],
}

/** tsc's errors with each file's README line, so a failure names the snippet. */
function explain(output: string): string {
  return output.replace(/^(readme\/[^(]+)\(/gm, (_, file: string) => {
    const source = written.get(join(project, file))
    return source ? `${file} [${source}](` : `${file}(`
  })
}

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

// --- a server started from a README file ---

interface Started {
  readonly child: ChildProcess
  readonly port: number
  output(): string
  /** Resolves with the exit code, or null on a signal. */
  readonly exited: Promise<number | null>
}

const children = new Set<ChildProcess>()

/** Sends `signal` to the child's whole process group (the runner and what it started). */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid === undefined) throw new Error('not started')
    process.kill(-child.pid, signal)
  } catch {
    child.kill(signal) // never started, or the group is gone already
  }
}

/** The first process `pid` started (Linux): tsx's child is the one running the entry. */
function firstChildOf(pid: number): number | undefined {
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(' ')
    return children[0] ? Number(children[0]) : undefined
  } catch {
    return undefined
  }
}

/**
 * SIGINT to the server itself, as Ctrl-C in a terminal sends it (to the whole foreground group)
 * minus the runner's part. tsx relays a signal it gets and SIGKILLs a child that has not
 * acknowledged it over IPC within 2 × 30 ms (its relaySignalToChild), which a loaded machine
 * misses now and then: the server, killed in the middle of its shutdown, exits 130, or its clients
 * see 1006. That is tsx's window, not the server's handling, which is what this test checks.
 */
function interrupt(child: ChildProcess): void {
  const tsx =
    child.pid !== undefined && /tsx/.test(readFileSync(`/proc/${child.pid}/cmdline`, 'utf8'))
  const server = tsx ? firstChildOf(child.pid as number) : undefined
  if (server === undefined) signalGroup(child, 'SIGINT')
  else process.kill(server, 'SIGINT')
}

/** Starts `command args` in `cwd` with PORT set, and waits until the port accepts. */
async function start(command: string, args: string[], cwd: string): Promise<Started> {
  const port = await freePort()
  const child = spawn(command, args, {
    cwd,
    env: userEnvironment({ PORT: String(port), DENO_NO_UPDATE_CHECK: '1' }),
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, which a signal can reach whole, as Ctrl-C in a terminal reaches
    // the foreground group: see interrupt().
    detached: true,
  })
  children.add(child)
  let output = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk
  })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk
  })
  const exited = new Promise<number | null>((resolve) => {
    child.on('exit', (code) => {
      children.delete(child)
      resolve(code)
    })
  })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${command} did not listen:\n${output}`)),
      30_000,
    )
    const poll = setInterval(() => {
      const probe = connectTcp(port, '127.0.0.1')
      probe.on('error', () => {})
      probe.on('connect', () => {
        probe.destroy()
        clearInterval(poll)
        clearTimeout(timer)
        resolve()
      })
    }, 100)
    void exited.then((code) => {
      clearInterval(poll)
      clearTimeout(timer)
      reject(new Error(`${command} exited with ${code} before listening:\n${output}`))
    })
  })
  return { child, port, output: () => output, exited }
}

interface Client {
  send(data: string | Uint8Array): void
  next(): Promise<{ data: string | Uint8Array; binary: boolean }>
  readonly closed: Promise<{ code: number; reason: string }>
}

/** A real `ws` client, the one installed in the project. */
async function connect(port: number): Promise<Client> {
  const require = createRequire(join(project, 'package.json'))
  const { default: WebSocket } = (await import(pathToFileURL(require.resolve('ws')).href)) as {
    default: typeof import('ws').default
  }
  const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`)
  const queue: { data: string | Uint8Array; binary: boolean }[] = []
  const waiting: ((message: { data: string | Uint8Array; binary: boolean }) => void)[] = []
  socket.on('message', (data, binary) => {
    const message = {
      data: binary ? new Uint8Array(data as Buffer) : String(data),
      binary,
    }
    const waiter = waiting.shift()
    if (waiter) waiter(message)
    else queue.push(message)
  })
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    socket.on('close', (code, reason) => resolve({ code, reason: String(reason) }))
  })
  socket.on('error', () => {})
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve())
    socket.once('error', reject)
  })
  return {
    send: (data) => socket.send(data),
    next: () =>
      new Promise((resolve) => {
        const message = queue.shift()
        if (message) resolve(message)
        else waiting.push(resolve)
      }),
    closed,
  }
}

/** Echo over a real client, then SIGINT: the client sees `expected`, the process ends. */
async function echoThenInterrupt(
  server: Started,
  expected: { code: number; reason?: string },
): Promise<void> {
  const client = await connect(server.port)
  client.send('hello')
  expect(await client.next()).toEqual({ data: 'hello', binary: false })
  client.send(new Uint8Array([1, 2, 3]))
  expect(await client.next()).toEqual({ data: new Uint8Array([1, 2, 3]), binary: true })
  interrupt(server.child)
  const closed = await client.closed
  expect(closed.code, server.output()).toBe(expected.code)
  if (expected.reason !== undefined) expect(closed.reason).toBe(expected.reason)
  const exited = await Promise.race([
    server.exited,
    new Promise<'running'>((resolve) => setTimeout(() => resolve('running'), 10_000).unref()),
  ])
  expect(exited, `still running 10 s after SIGINT:\n${server.output()}`).not.toBe('running')
}

/**
 * How the README runs an entry: the command its first line gives (`// server.ts: npx tsx
 * server.ts`), with the entry's file name, and the workspace's bun and deno binaries.
 */
function commandFor(label: string, entry: string): [string, string[]] {
  const readme = readmes.find((r) => r.label === label)!
  const snippet = readme.snippets.find((s) => s.command !== undefined)
  if (!snippet?.command) throw new Error(`${readme.path}: no snippet says how to run it`)
  const [runner, ...args] = snippet.command.split(' ')
  args[args.length - 1] = entry
  switch (runner) {
    case 'npx':
      return [bin(args[0]!), args.slice(1)]
    case 'bun':
      return [
        binaryOf('bun', 'adapter-bun', (dir) => {
          const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
          return join(dir, manifest.bin.bun)
        }),
        args,
      ]
    default:
      return [binaryOf('deno', 'adapter-deno', (dir) => join(dir, 'deno')), args]
  }
}

function binaryOf(packageName: string, fromPackage: string, file: (dir: string) => string) {
  const require = createRequire(join(root, 'packages', fromPackage, 'package.json'))
  return file(dirname(require.resolve(`${packageName}/package.json`)))
}

// --- the test ---

beforeAll(async () => {
  project = mkdtempSync(join(tmpdir(), 'handshake-first-hour-'))
  const packed = join(project, 'tarballs')
  mkdirSync(packed)
  tarballs = packages.map((pkg) => pack(pkg.dir, packed).filename)
  const app = join(project, 'app')
  mkdirSync(app)
  project = app
  // The READMEs' install section, with the workspace's versions.
  await sh('npm', ['init', '-y'])
  await sh('npm', ['pkg', 'set', 'type=module'])
  await sh(
    'npm',
    [
      'install',
      '--no-audit',
      '--no-fund',
      '--prefer-offline',
      ...tarballs,
      ...DEPENDENCIES,
      ...OTHERS,
      ...snippetImports(),
    ],
    project,
    480_000,
  )
  await sh(bin('tsc'), ['--init'])
  writeSnippets()
  writeTsconfigs()
}, 600_000)

afterAll(async () => {
  for (const child of children) signalGroup(child, 'SIGKILL')
  if (project) rmSync(dirname(project), { recursive: true, force: true })
})

describe('the READMEs', () => {
  it('name the file of every TypeScript snippet on its first line', () => {
    expect(readmes.flatMap((readme) => readme.unnamed)).toEqual([])
    expect(rootApp, 'the root README has an `// app.ts` snippet').toBeDefined()
  })

  it('hold JSON blocks that parse', () => {
    for (const block of readmes.flatMap((readme) => readme.json)) {
      expect(() => JSON.parse(block.text), block.source).not.toThrow()
    }
  })

  it('import the app as ./app.js, except for Deno, which imports the file as it is named', () => {
    for (const readme of readmes) {
      for (const snippet of readme.snippets) {
        for (const [, specifier] of snippet.code.matchAll(/from '(\.[^']*)'/g)) {
          const expected = readme.checker === 'deno' ? /\.ts$/ : /\.js$/
          expect(specifier, snippet.source).toMatch(expected)
        }
      }
    }
  })

  it('handle SIGINT wherever they handle SIGTERM', () => {
    for (const snippet of readmes.flatMap((readme) => readme.snippets)) {
      const signals = (name: string) => snippet.code.split(`'${name}'`).length - 1
      expect(signals('SIGINT'), snippet.source).toBe(signals('SIGTERM'))
    }
  })
})

describe('the packages as installed from their tarballs', () => {
  // The checks run side by side: each is a process of its own.
  it.concurrent.each(STRICT_PROGRAMS)(
    'type-check the README apps and every entry point: %s, strict, with skipLibCheck off',
    async (program) => {
      await tsc(`tsconfig.${program}.json`, OTHERS_ERRORS[program])
    },
    600_000,
  )

  it.concurrent("type-check the README test files, and Bun's snippets under nodenext, with skipLibCheck on", async () => {
    await tsc('tsconfig.loose.json')
  }, 600_000)

  it.concurrent('type-check the Deno README with deno check', async () => {
    const deno = binaryOf('deno', 'adapter-deno', (dir) => join(dir, 'deno'))
    for (const readme of readmes.filter((r) => r.checker === 'deno')) {
      const folder = join(project, 'readme', readme.label)
      const files = readdirSync(folder).filter((file) => file.endsWith('.ts'))
      expect(files.length).toBeGreaterThan(0)
      await sh(deno, ['check', '--quiet', ...files], folder)
    }
  }, 600_000)

  it('run the README tests against the packed test kit', async () => {
    const { stdout } = await sh(bin('vitest'), ['run', 'readme'], project)
    expect(stdout).toMatch(/Tests\s+\d+ passed/)
  }, 300_000)

  it('serve the Node README entries in tsx: echo, then SIGINT closes with 1001', async () => {
    const folder = join(project, 'readme', 'adapter-node')
    const entries = readdirSync(folder).filter((file) => /^server(\.\d+)?\.ts$/.test(file))
    expect(entries.length).toBeGreaterThan(0)
    for (const entry of entries) {
      const server = await start(...commandFor('adapter-node', entry), folder)
      await echoThenInterrupt(server, { code: 1001, reason: 'Server shutting down' })
      expect(await server.exited, `${entry}:\n${server.output()}`).toBe(0)
    }
  }, 120_000)

  it('serve the Bun README entries: serve() closes with 1001 on SIGINT, the default export drops with 1006', async () => {
    const folder = join(project, 'readme', 'adapter-bun')
    const entries = readdirSync(folder).filter((file) => /^index(\.\d+)?\.ts$/.test(file))
    const kinds = entries.map((entry) => {
      const code = readFileSync(join(folder, entry), 'utf8')
      return { entry, graceful: /serve\(app/.test(code) }
    })
    // Both forms are in the README, and both are run.
    expect(kinds.some((kind) => kind.graceful)).toBe(true)
    expect(kinds.some((kind) => !kind.graceful)).toBe(true)
    for (const { entry, graceful } of kinds) {
      const server = await start(...commandFor('adapter-bun', entry), folder)
      // As the README says next to the default export: a signal drops every client.
      await echoThenInterrupt(
        server,
        graceful ? { code: 1001, reason: 'Server shutting down' } : { code: 1006 },
      )
    }
  }, 120_000)

  it('serve the Deno README entry: serve() closes with 1001 on SIGINT', async () => {
    const folder = join(project, 'readme', 'adapter-deno')
    // The entries that read the port from PORT; the others listen on 8000, which may be taken.
    const entries = readdirSync(folder).filter((file) =>
      /Deno\.env\.get\('PORT'\)/.test(readFileSync(join(folder, file), 'utf8')),
    )
    expect(entries.length).toBeGreaterThan(0)
    for (const entry of entries) {
      const server = await start(...commandFor('adapter-deno', entry), folder)
      await echoThenInterrupt(server, { code: 1001, reason: 'Server shutting down' })
    }
  }, 120_000)
})
