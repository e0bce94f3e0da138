/**
 * The client in headless Chromium (Debian's, through playwright-core), against the test app on
 * each of the four runtimes (Node, Bun, Deno, and a Durable Object in workerd), all through the
 * test's TCP proxy. The page is the app's empty one at `/`, and the built client
 * (`dist/index.js`, an ES module with no imports) is imported into it from a blob URL, so that
 * the same page runs against every runtime. It needs
 * Debian's `chromium` (`apt-get install -y chromium`); without it the test fails, it never skips.
 * @module
 */
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { type Browser, chromium, type Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type * as ClientModule from '../src/index.js'
import { startProxy, type TcpProxy } from './proxy.js'
import { RUNTIMES, startRuntime } from './runtimes.js'
import type { RunningApp } from './suite.js'

const CHROMIUM = '/usr/bin/chromium'
const built = fileURLToPath(new URL('../dist/index.js', import.meta.url))

declare global {
  interface Window {
    handshake: typeof ClientModule
    client: ClientModule.Client
    log: unknown[]
  }
}

let browser: Browser

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)`,
    )
  }
  if (!existsSync(built)) throw new Error(`${built} is missing: run pnpm build first`)
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
  })
}, 60_000)

afterAll(async () => {
  await browser?.close()
})

/** The entries of the page's log that are messages of a feed, `{ n }`. */
const feed = (entries: unknown[]) =>
  entries.filter(
    (entry): entry is { n: number } => typeof entry === 'object' && 'n' in (entry as object),
  )

describe.each(RUNTIMES)('the client in Chromium against %s', (runtime) => {
  let app: RunningApp
  let proxy: TcpProxy
  let page: Page

  beforeAll(async () => {
    app = await startRuntime(runtime)
  }, 90_000)

  afterAll(async () => {
    await proxy?.stop()
    await app?.stop()
  }, 30_000)

  beforeEach(async () => {
    await proxy?.stop()
    proxy = await startProxy(app.url)
    page = await (await browser.newContext()).newPage()
    // The app's empty page, from the server through the proxy: the page's origin is the
    // proxy's, so a relative WebSocket URL passes the server's origin check.
    await page.goto(`${proxy.url}/`)
    const client = await page.evaluate(
      (source) => URL.createObjectURL(new Blob([source], { type: 'text/javascript' })),
      readFileSync(built, 'utf8'),
    )
    await page.addScriptTag({
      type: 'module',
      content: `import * as m from '${client}'; window.log = []; window.handshake = m`,
    })
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
  }, 30_000)

  afterEach(async () => {
    await page?.context().close()
  })

  const log = () => page.evaluate(() => window.log)

  async function publish(data: unknown): Promise<void> {
    const response = await fetch(`${app.url}/publish/browser`, {
      method: 'POST',
      body: JSON.stringify(data),
    })
    expect(response.status).toBe(200)
  }

  /** Publishes `{ n }` for n from 1 to `total` to `feeds/<name>`, 2 ms apart. */
  async function publishFeed(name: string, total: number): Promise<void> {
    for (let n = 1; n <= total; n++) {
      const response = await fetch(`${app.url}/feed/${name}?n=${n}`, { method: 'POST' })
      expect(response.status).toBe(204)
      await new Promise((resolve) => setTimeout(resolve, 2))
    }
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

  it('reconnects when the heartbeat goes unanswered (a stalled connection)', async () => {
    proxy.stall()
    await page.waitForFunction(() =>
      window.log.some((entry) => (entry as { reason?: string }).reason?.startsWith('No heartbeat')),
    )
    await page.waitForFunction(
      () => window.log.filter((entry) => entry === 'subscribed').length === 2,
    )
    expect(await page.evaluate(() => window.client.state)).toEqual({ status: 'open' })
    expect(await page.evaluate(() => window.client.request('add', { a: 2, b: 2 }))).toBe(4)
  })

  it('keeps working through a slow network: requests answered, messages in order, no false heartbeat timeout', async () => {
    proxy.delay = 150
    await page.evaluate(() => {
      window.client.subscribe('feeds/slow', {
        message: (data) => window.log.push({ n: data.n }),
        subscribed: () => window.log.push('slow'),
      })
    })
    await page.waitForFunction(() => window.log.includes('slow'))
    const started = Date.now()
    expect(await page.evaluate(() => window.client.request('add', { a: 3, b: 4 }))).toBe(7)
    expect(Date.now() - started).toBeGreaterThanOrEqual(290)
    await publishFeed('slow', 20)
    await page.waitForFunction(() => window.log.filter((e) => (e as { n?: number }).n).length >= 20)
    // Idle past several heartbeats, each answered in about 300 ms.
    await new Promise((resolve) => setTimeout(resolve, 1500))
    const entries = await log()
    expect(feed(entries).map((entry) => entry.n)).toEqual(
      Array.from({ length: 20 }, (_, i) => i + 1),
    )
    // The only state the page went through is the first open.
    expect(entries.filter((entry) => (entry as { status?: string }).status)).toEqual([
      { status: 'open' },
    ])
  })

  it('closes when the page goes away, and comes back from the back/forward cache', async () => {
    const accepted = proxy.accepted
    await page.evaluate(() =>
      window.dispatchEvent(new PageTransitionEvent('pagehide', { persisted: true })),
    )
    expect(await page.evaluate(() => window.client.state)).toEqual({
      status: 'closed',
      code: 1001,
      reason: 'The page went away',
    })
    const subscribers = async () =>
      ((await (await fetch(`${app.url}/subscribers/browser`)).json()) as { subscribers: number })
        .subscribers
    await expect.poll(subscribers, { timeout: 10_000 }).toBe(0)
    await page.evaluate(() =>
      window.dispatchEvent(new PageTransitionEvent('pageshow', { persisted: true })),
    )
    await page.waitForFunction(
      () => window.log.filter((entry) => entry === 'subscribed').length === 2,
    )
    expect(proxy.accepted).toBeGreaterThan(accepted)
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
    const total = 150
    const publishing = publishFeed('browser', total)
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
    const entries = await log()
    expect(feed(entries).map((entry) => entry.n)).toEqual(
      Array.from({ length: total }, (_, i) => i + 1),
    )
    // Subscribed again after the cut (and after any other reconnect), resumed each time.
    expect(entries.filter((entry) => entry === 'feed').length).toBeGreaterThanOrEqual(2)
    expect(
      entries.filter(
        (entry) => (entry as { gap?: { topic: string } }).gap?.topic === 'feeds/browser',
      ),
    ).toEqual([])
  })
})
