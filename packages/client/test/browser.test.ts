/**
 * The client in headless Chromium (Debian's, through playwright-core): the page loads the
 * built client (`dist/index.js`, an ES module with no imports) from a Node server that also
 * serves the channels, all through the test's TCP proxy. It needs Debian's `chromium`
 * (`apt-get install -y chromium`); without it the test fails, it never skips.
 * @module
 */
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { type HandshakeServer, serve } from '@handshake/node'
import { type Browser, chromium, type Page } from 'playwright-core'
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest'
import type * as ClientModule from '../src/index.js'
import { createChannelsApp, useFeedHistory } from './app.js'
import { startProxy, type TcpProxy } from './proxy.js'
import { until } from './suite.js'

const CHROMIUM = '/usr/bin/chromium'
const built = fileURLToPath(new URL('../dist/index.js', import.meta.url))

declare global {
  interface Window {
    handshake: typeof ClientModule
    client: ClientModule.Client
    log: unknown[]
  }
}

let server: HandshakeServer
let proxy: TcpProxy
let browser: Browser
let page: Page

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)`,
    )
  }
  if (!existsSync(built)) throw new Error(`${built} is missing: run pnpm build first`)
  const app = createChannelsApp()
  app.get('/client.js', (c) =>
    c.body(readFileSync(built, 'utf8'), 200, { 'content-type': 'text/javascript' }),
  )
  app.get('/', (c) =>
    c.html(
      '<!doctype html><title>client</title><script type="module">import * as m from "/client.js"; window.log = []; window.handshake = m</script>',
    ),
  )
  server = await serve(app, { port: 0, onListen() {} })
  useFeedHistory(server.topics)
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
  })
}, 60_000)

afterAll(async () => {
  await browser?.close()
  await proxy?.stop()
  await server?.shutdown({ timeout: 1000 })
})

beforeEach(async () => {
  await proxy?.stop()
  proxy = await startProxy(`http://127.0.0.1:${server.address.port}`)
  page = await (await browser.newContext()).newPage()
  await page.goto(proxy.url)
  await page.waitForFunction(() => window.handshake !== undefined)
  // A relative URL: the page's own origin, so the server's origin check passes.
  await page.evaluate(() => {
    window.client = window.handshake.createClient('/ws?name=page', {
      minDelay: 20,
      maxDelay: 100,
      // Short enough for a test, long enough for a machine busy with other tests.
      heartbeatInterval: 500,
      heartbeatTimeout: 1000,
    })
    window.client.onState((state) => window.log.push(state))
    window.client.subscribe('rooms/browser', {
      message: (data) => window.log.push({ message: data }),
      subscribed: () => window.log.push('subscribed'),
      gap: (gap) => window.log.push({ gap }),
    })
  })
  await page.waitForFunction(() => window.log.includes('subscribed'))
})

const log = () => page.evaluate(() => window.log)

async function publish(data: unknown): Promise<void> {
  await fetch(`http://127.0.0.1:${server.address.port}/publish/browser`, {
    method: 'POST',
    body: JSON.stringify(data),
  })
}

it('connects with a relative URL, answers requests, and receives what a route publishes', async () => {
  expect(await page.evaluate(() => window.client.request('add', { a: 20, b: 22 }))).toBe(42)
  await publish({ text: 'from a route' })
  await page.waitForFunction(() =>
    window.log.some((entry) => (entry as { message?: unknown }).message),
  )
  expect(await log()).toEqual([
    { status: 'open' },
    'subscribed',
    { message: { text: 'from a route' } },
  ])
  const invalid = await page.evaluate(() =>
    window.client.request('add', { a: 1 } as never).catch((e: ClientModule.ChannelError) => ({
      name: e.name,
      code: e.code,
      paths: e.issues?.map((issue) => issue.path),
    })),
  )
  expect(invalid).toEqual({ name: 'ChannelError', code: 'invalid', paths: [['b']] })
})

it('reconnects after a cut, fails what was in flight, and restores the subscription', async () => {
  const inFlight = page.evaluate(() =>
    window.client.request('sleep', 3000).catch((e: ClientModule.ChannelError) => e.code),
  )
  await new Promise((resolve) => setTimeout(resolve, 100))
  proxy.cut()
  expect(await inFlight).toBe('disconnected')
  await page.waitForFunction(
    () => window.log.filter((entry) => entry === 'subscribed').length === 2,
  )
  const entries = await log()
  expect(entries).toContainEqual(
    expect.objectContaining({ status: 'reconnecting', attempt: 1, code: 1006 }),
  )
  expect(entries).toContainEqual({ gap: { topic: 'rooms/browser', reason: 'no-history' } })
  await publish({ text: 'after the cut' })
  await page.waitForFunction(() =>
    window.log.some((entry) => (entry as { message?: unknown }).message),
  )
  expect((await log()).filter((entry) => (entry as { message?: unknown }).message)).toEqual([
    { message: { text: 'after the cut' } },
  ])
})

it('reconnects when the heartbeat goes unanswered', async () => {
  proxy.stall()
  await page.waitForFunction(() =>
    window.log.some((entry) => (entry as { reason?: string }).reason?.startsWith('No heartbeat')),
  )
  await page.waitForFunction(
    () => window.log.filter((entry) => entry === 'subscribed').length === 2,
  )
  expect(await page.evaluate(() => window.client.state)).toEqual({ status: 'open' })
})

it('closes when the page goes away, and comes back from the back/forward cache', async () => {
  await page.evaluate(() =>
    window.dispatchEvent(new PageTransitionEvent('pagehide', { persisted: true })),
  )
  expect(await page.evaluate(() => window.client.state)).toEqual({
    status: 'closed',
    code: 1001,
    reason: 'The page went away',
  })
  await until(() => server.connections.size === 0, 'the server to see the close')
  await page.evaluate(() =>
    window.dispatchEvent(new PageTransitionEvent('pageshow', { persisted: true })),
  )
  await page.waitForFunction(
    () => window.log.filter((entry) => entry === 'subscribed').length === 2,
  )
  expect(proxy.accepted).toBeGreaterThanOrEqual(2)
})

it('resumes a topic with history across a cut: every message once, in order, no gap', async () => {
  await page.evaluate(() => {
    window.client.subscribe('feeds/browser', {
      message: (data) => window.log.push({ n: data.n }),
      subscribed: () => window.log.push('feed'),
      gap: (gap) => window.log.push({ gap }),
    })
  })
  await page.waitForFunction(() => window.log.includes('feed'))
  const base = `http://127.0.0.1:${server.address.port}`
  const total = 150
  const publishing = (async () => {
    for (let n = 1; n <= total; n++) {
      await fetch(`${base}/feed/browser?n=${n}`, { method: 'POST' })
      await new Promise((resolve) => setTimeout(resolve, 2))
    }
  })()
  const received = async () =>
    (await log()).filter(
      (entry): entry is { n: number } => typeof entry === 'object' && 'n' in (entry as object),
    )
  await page.waitForFunction(() => window.log.filter((e) => (e as { n?: number }).n).length >= 50)
  proxy.refuse = true
  proxy.cut()
  await new Promise((resolve) => setTimeout(resolve, 200))
  proxy.refuse = false
  await publishing
  await page.waitForFunction(
    (total) => window.log.filter((e) => (e as { n?: number }).n).length >= total,
    total,
    { timeout: 20_000 },
  )
  expect((await received()).map((entry) => entry.n)).toEqual(
    Array.from({ length: total }, (_, i) => i + 1),
  )
  const entries = await log()
  // Subscribed again after the cut (and after any other reconnect), resumed each time.
  expect(entries.filter((entry) => entry === 'feed').length).toBeGreaterThanOrEqual(2)
  expect(
    entries.filter(
      (entry) => (entry as { gap?: { topic: string } }).gap?.topic === 'feeds/browser',
    ),
  ).toEqual([])
})
