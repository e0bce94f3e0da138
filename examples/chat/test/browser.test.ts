/**
 * The chat end to end, in headless Chromium driven by playwright-core:
 *
 * - on Node and on Workers (each entry started by its package script), a page that goes through
 *   a TCP proxy of the test's own joins a room, chats, is cut off (the proxy resets its
 *   connection and refuses the next ones) while another page talks, and shows what it missed
 *   once it is back, once and in order; and it shows the room list;
 * - two instances of the Node entry (`src/node.ts`) in child processes on one `redis-server` of
 *   the test's own, one page on each.
 *
 * It needs Debian's `chromium` and `redis-server` packages
 * (`apt-get install -y chromium redis-server`); without them the test fails, it never skips.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { type RedisServer, startRedis } from '@handshake/conformance/redis'
import { type Browser, chromium, type Page } from 'playwright-core'
import { afterAll, describe, expect, it } from 'vitest'
import { startProxy, type TcpProxy } from '../../../packages/client/test/proxy.ts'
import { type Runtime, startScript } from '../../echo/test/spawn.ts'

const CHROMIUM = '/usr/bin/chromium'
const exampleDir = fileURLToPath(new URL('..', import.meta.url))
const artifactsDir = fileURLToPath(new URL('../artifacts/', import.meta.url))

interface Server {
  readonly child: ChildProcess
  readonly url: string
  readonly exited: Promise<number | null>
}

// Wide margins: CI runs the whole suite in parallel on two cores.
const SLOW = { timeout: 20_000 }

const servers: Server[] = []
let browser: Browser | undefined
let redis: RedisServer | undefined

/**
 * Starts `src/node.ts` as `pnpm start` does (with `REDIS_URL`, as one of several instances), and
 * resolves with the URL it prints.
 */
async function startServer(redisUrl: string, port = 0): Promise<Server> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/node.ts'], {
    cwd: exampleDir,
    env: { ...process.env, PORT: String(port), REDIS_URL: redisUrl },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
  let output = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString()
  })
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      const match = /http:\/\/127\.0\.0\.1:\d+\//.exec(output)
      if (match) resolve(match[0])
    })
    exited.then((code) => reject(new Error(`The chat exited with ${code}:\n${output}`)))
  })
  const server = { child, url, exited }
  servers.push(server)
  return server
}

async function stopServer(server: Server): Promise<void> {
  if (server.child.exitCode === null && server.child.signalCode === null) {
    server.child.kill('SIGTERM')
    // The graceful shutdown waits at most the close-handshake timeout (10 s); never longer.
    const timer = setTimeout(() => server.child.kill('SIGKILL'), 15_000)
    await server.exited
    clearTimeout(timer)
  }
}

/** A page of its own browser context (its own storage), as a second user would have. */
async function openChat(url: string, name: string, errors: string[], room = 'e2e'): Promise<Page> {
  browser ??= await launchChromium()
  const context = await browser.newContext({ viewport: { width: 720, height: 640 } })
  const page = await context.newPage()
  page.on('pageerror', (err) => errors.push(`${name}: ${err.message}`))
  await page.goto(`${url}?room=${room}&name=${name}`)
  await page.locator('#status[data-state="open"]').waitFor()
  // In the room once its member list, from the server, has it.
  await expect.poll(() => page.locator('#members').textContent(), SLOW).toContain(name)
  return page
}

async function say(page: Page, text: string): Promise<void> {
  await page.locator('#say input[name="text"]').fill(text)
  await page.locator('#say input[name="text"]').press('Enter')
}

/** Debian's Chromium, headless, with a fresh profile. Checked in the test, so that it fails. */
async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)`,
    )
  }
  // launch() gives every run a fresh temporary profile (user-data-dir) and deletes it on close.
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
}

afterAll(async () => {
  await browser?.close()
  await Promise.all(servers.map(stopServer))
  await redis?.stop()
})

const RUNTIMES: Runtime[] = [
  { name: 'node', script: 'start' },
  { name: 'workers', script: 'dev:workers' },
]

describe.each(RUNTIMES)('the chat in Chromium on $name', ({ script }) => {
  let proxy: TcpProxy | undefined
  afterAll(async () => {
    await proxy?.stop()
  })

  it('joins a room, chats, shows what it missed while cut off once it is back, and lists the rooms', {
    timeout: 120_000,
  }, async () => {
    const server = await startScript(exampleDir, script)
    try {
      const errors: string[] = []
      proxy = await startProxy(server.httpUrl)
      const alice = await openChat(`${proxy.url}/`, 'alice', errors, 'history')
      const bob = await openChat(`${server.httpUrl}/`, 'bob', errors, 'history')
      const aliceLog = alice.locator('#log')
      await expect.poll(() => aliceLog.textContent(), SLOW).toContain('bob joined')
      await say(bob, 'before the cut')
      await expect.poll(() => aliceLog.textContent(), SLOW).toContain('bob: before the cut')
      await say(alice, 'hi bob')
      await expect.poll(() => bob.locator('#log').textContent(), SLOW).toContain('alice: hi bob')

      // Cut off: the proxy resets alice's connection and refuses her attempts, until bob has
      // said two things without her.
      proxy.refuse = true
      proxy.cut()
      await expect.poll(() => bob.locator('#log').textContent(), SLOW).toContain('alice left')
      expect(await alice.locator('#status').getAttribute('data-state')).toMatch(
        /^(reconnecting|connecting)$/,
      )
      await say(bob, 'missed one')
      await say(bob, 'missed two')
      const carol = await openChat(`${server.httpUrl}/`, 'carol', errors, 'elsewhere')
      await expect.poll(() => carol.locator('#members').textContent(), SLOW).toContain('carol')
      proxy.refuse = false

      // Back: the client resumed the room from its last message, so alice sees both, once,
      // in order, and no gap.
      await alice.locator('#status[data-state="open"]').waitFor({ timeout: 30_000 })
      await expect.poll(() => aliceLog.textContent(), SLOW).toContain('bob: missed two')
      const lines = await alice.locator('#log li').allTextContents()
      // Her own message, which the resume gave back too, is shown once.
      expect(lines.filter((line) => line.startsWith('alice: '))).toEqual(['alice: hi bob'])
      expect(lines.filter((line) => line.startsWith('bob: '))).toEqual([
        'bob: before the cut',
        'bob: missed one',
        'bob: missed two',
      ])
      expect(lines.join('\n')).toMatch(/Disconnected \(1006\)[\s\S]*bob: missed one/)
      expect(lines.join('\n')).not.toContain('lost')

      // The rooms request, sent on every open: both rooms, with how many are in each.
      await expect
        .poll(() => alice.locator('#rooms').textContent(), SLOW)
        .toBe('elsewhere (1)history (2)')
      await alice.locator('#rooms button', { hasText: 'elsewhere' }).click()
      await expect
        .poll(() => aliceLog.textContent(), SLOW)
        .toMatch(/alice joined[\s\S]*alice joined[\s\S]*alice joined/)
      await expect
        .poll(() => carol.locator('#members').textContent(), SLOW)
        .toBe('In the room: alice, carol')
      await expect
        .poll(() => bob.locator('#log').textContent(), SLOW)
        .toMatch(/alice left[\s\S]*alice left/)
      await mkdir(artifactsDir, { recursive: true })
      await alice.screenshot({ path: `${artifactsDir}chat-${script.replace(':', '-')}.png` })
      expect(errors).toEqual([])
      await Promise.all([alice, bob, carol].map((page) => page.context().close()))
    } finally {
      await server.stop()
    }
  })
})

it('shows every message of another tab with the same name, even one that says what this tab said', {
  timeout: 60_000,
}, async () => {
  const server = await startScript(exampleDir, 'start')
  try {
    const errors: string[] = []
    const first = await openChat(`${server.httpUrl}/`, 'dana', errors, 'twins')
    const second = await openChat(`${server.httpUrl}/`, 'dana', errors, 'twins')
    await say(first, 'same words')
    await expect
      .poll(() => second.locator('#log').textContent(), SLOW)
      .toContain('dana: same words')
    await say(second, 'same words')
    await say(second, 'and more')
    await expect.poll(() => first.locator('#log').textContent(), SLOW).toContain('dana: and more')
    // Its own line, then the other tab's two: a live message is never taken for its own.
    const lines = await first.locator('#log li.message').allTextContents()
    expect(lines).toEqual(['dana: same words', 'dana: same words', 'dana: and more'])
    expect(errors).toEqual([])
    await Promise.all([first, second].map((page) => page.context().close()))
  } finally {
    await server.stop()
  }
})

it('two pages on two instances chat in one room through Redis, see each other leave, and survive a restart', {
  timeout: 120_000,
}, async () => {
  const errors: string[] = []
  redis = await startRedis()
  const redisUrl = redis.url
  const [server, other] = await Promise.all([startServer(redisUrl), startServer(redisUrl)])
  expect(server.url).not.toBe(other.url)
  const alice = await openChat(server.url, 'alice', errors)
  const bob = await openChat(other.url, 'bob', errors)
  const aliceLog = alice.locator('#log')
  const bobLog = bob.locator('#log')

  await expect.poll(() => aliceLog.textContent(), SLOW).toContain('bob joined')
  await expect.poll(() => alice.locator('#members').textContent(), SLOW).toContain('alice, bob')
  // Bob joined after alice, on the other instance: his first list has her.
  await expect
    .poll(() => bob.locator('#members').textContent(), SLOW)
    .toBe('In the room: alice, bob')

  await say(alice, 'Hello, Bob!')
  await expect.poll(() => bobLog.textContent(), SLOW).toContain('alice: Hello, Bob!')
  await say(bob, 'Hi Alice <b>not bold</b>')
  await expect.poll(() => aliceLog.textContent(), SLOW).toContain('bob: Hi Alice <b>not bold</b>')
  // Text is shown as text, never as markup.
  expect(await alice.locator('#log li.message b').count()).toBe(2)

  await bob.close()
  await expect.poll(() => aliceLog.textContent(), SLOW).toContain('bob left')
  await expect.poll(() => alice.locator('#members').textContent(), SLOW).toBe('In the room: alice')

  await mkdir(artifactsDir, { recursive: true })
  await alice.screenshot({ path: `${artifactsDir}chat.png`, fullPage: true })

  // Shutdown: the page hears 1001 Going Away, then retries with back-off.
  const port = Number(new URL(server.url).port)
  await stopServer(server)
  expect(await server.exited).toBe(0)
  await expect.poll(() => aliceLog.textContent(), SLOW).toMatch(/Disconnected \(1001: .+\)/)
  await expect
    .poll(() => alice.locator('#status').getAttribute('data-state'), SLOW)
    .toMatch(/^(reconnecting|connecting)$/)

  // A new server on the same port: the page reconnects on its own and rejoins the room, which
  // still spans the other instance.
  const restarted = await startServer(redisUrl, port)
  await alice.locator('#status[data-state="open"]').waitFor({ timeout: 30_000 })
  await expect.poll(() => aliceLog.textContent(), SLOW).toMatch(/alice joined[\s\S]*alice joined/)
  const carol = await openChat(other.url, 'carol', errors)
  await expect.poll(() => aliceLog.textContent(), SLOW).toContain('carol joined')
  await expect
    .poll(() => carol.locator('#members').textContent(), SLOW)
    .toBe('In the room: alice, carol')
  await say(carol, 'Across the restart')
  await expect.poll(() => aliceLog.textContent(), SLOW).toContain('carol: Across the restart')
  await stopServer(restarted)

  expect(errors).toEqual([])
})
