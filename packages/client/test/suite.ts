/**
 * The client's scenarios against a real server, written once: each runtime's test file calls
 * {@link clientSuite} with a way to start the test app (`app.ts`) on that runtime. Every client
 * goes through a TCP proxy of the test's own, which cuts and stalls connections.
 * @module
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import {
  ChannelError,
  type Client,
  type ClientOptions,
  type ClientState,
  createClient,
  type Gap,
  type WebSocketConstructor,
} from '../src/index.js'
import type { channels } from './app.js'
import { startProxy, type TcpProxy } from './proxy.js'

/** A server running the test app. */
export interface RunningApp {
  /** `http://127.0.0.1:PORT` */
  readonly url: string
  stop(): Promise<void>
}

/** What {@link clientSuite} runs against. */
export interface SuiteTarget {
  /** For the titles: `node`, `bun`... */
  readonly name: string
  /** Starts the app; called once for the suite. */
  start(): Promise<RunningApp>
  /** The client WebSocket implementations to run the suite with. */
  readonly clients: ReadonlyArray<{ name: string; WebSocket: WebSocketConstructor }>
}

type TestClient = Client<typeof channels>

/** Resolves once `check` holds, polling; fails with `what` after `timeout` ms. */
export async function until(check: () => boolean, what: string, timeout = 10_000): Promise<void> {
  const deadline = Date.now() + timeout
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** Every state a client goes through, from now on. */
function states(client: TestClient): ClientState[] {
  const seen: ClientState[] = []
  client.onState((state) => seen.push(state))
  return seen
}

export function clientSuite(target: SuiteTarget): void {
  describe.each(target.clients)(
    `the client ($name) against ${target.name}`,
    ({ WebSocket: WS }) => {
      let app: RunningApp
      let proxy: TcpProxy
      const clients: TestClient[] = []

      beforeAll(async () => {
        app = await target.start()
      }, 90_000)
      afterAll(async () => {
        await app?.stop()
      }, 30_000)
      afterEach(async () => {
        for (const client of clients.splice(0)) client.close()
        await proxy?.stop()
      })

      async function open(path = '/ws?name=alice', options: ClientOptions = {}) {
        const client = createClient<typeof channels>(new URL(path, proxy.url), {
          WebSocket: WS,
          minDelay: 20,
          maxDelay: 100,
          ...options,
        })
        clients.push(client)
        if (options.connectTimeout !== 1) {
          await until(() => client.state.status !== 'connecting', 'the first connection')
        }
        return client
      }

      async function publishFromRoute(room: string, data: unknown): Promise<number> {
        const response = await fetch(`${app.url}/publish/${room}`, {
          method: 'POST',
          body: JSON.stringify(data),
        })
        expect(response.status).toBe(200)
        return ((await response.json()) as { subscribers: number }).subscribers
      }

      async function fresh(): Promise<void> {
        await proxy?.stop()
        proxy = await startProxy(app.url)
      }

      it('answers requests, with typed errors for invalid input, unknown names and timeouts', async () => {
        await fresh()
        const client = await open()
        expect(client.state).toEqual({ status: 'open' })
        expect(await client.request('add', { a: 2, b: 3 })).toBe(5)
        const invalid = await client.request('add', { a: 2, b: 'x' as never }).catch((e) => e)
        expect(invalid).toBeInstanceOf(ChannelError)
        expect(invalid.code).toBe('invalid')
        expect(invalid.issues).toEqual([expect.objectContaining({ path: ['b'] })])
        const missing = await client.request('nope' as never, {} as never).catch((e) => e)
        expect(missing.code).toBe('not_found')
        const started = Date.now()
        const late = await client.request('sleep', 1000, { timeout: 100 }).catch((e) => e)
        expect(late).toMatchObject({
          code: 'timeout',
          message: 'Request sleep had no answer within 100 ms',
        })
        expect(Date.now() - started).toBeLessThan(900)
        // The late answer is dropped; the connection goes on.
        expect(await client.request('sleep', 1)).toBe(1)
      })

      it('publishes to the other subscribers, acknowledged, and refuses with an error, not a close', async () => {
        await fresh()
        const alice = await open('/ws?name=alice')
        const bob = await open('/ws?name=bob')
        const got: unknown[] = []
        let ready = false
        bob.subscribe('rooms/lobby', {
          message: (data) => got.push(data),
          subscribed: () => (ready = true),
        })
        await until(() => ready, "bob's subscription")
        await alice.publish('rooms/lobby', { text: 'hi' }, { ack: true })
        await until(() => got.length === 1, 'the message')
        expect(got).toEqual([{ text: 'hi', from: 'alice' }])
        const refused = await alice
          .publish('rooms/lobby', { text: '' }, { ack: true })
          .catch((e) => e)
        expect(refused).toMatchObject({ code: 'invalid' })
        let error: ChannelError | undefined
        alice.subscribe('private/x', { message() {}, error: (e) => (error = e) })
        await until(() => error !== undefined, 'the refusal')
        expect(error).toMatchObject({ code: 'forbidden' })
        expect(alice.state.status).toBe('open')
      })

      it('reconnects after a cut (1006), restores its subscriptions, sends what waited once, and fails what was in flight', async () => {
        await fresh()
        const alice = await open('/ws?name=alice')
        const bob = await open('/ws?name=bob')
        const seen = states(bob)
        const got: unknown[] = []
        const gaps: Gap[] = []
        let subscribed = 0
        bob.subscribe('rooms/cut', {
          message: (data) => got.push(data),
          subscribed: () => subscribed++,
          gap: (gap) => gaps.push(gap),
        })
        await until(() => subscribed === 1, 'the subscription')
        const inFlight = bob.request('sleep', 2000).catch((e) => e)
        await new Promise((resolve) => setTimeout(resolve, 50))
        proxy.refuse = true
        proxy.cut()
        expect(await inFlight).toMatchObject({ code: 'disconnected' })
        await until(() => seen.some((s) => s.status === 'reconnecting'), 'reconnecting')
        expect(seen.find((s) => s.status === 'reconnecting')).toMatchObject({
          attempt: 1,
          code: 1006,
        })
        // Sent while disconnected: queued, then sent once on the new connection.
        bob.publish('rooms/cut', { text: 'queued', n: 1 })
        const queuedRequest = bob.request('add', { a: 1, b: 1 })
        await until(() => alice.state.status === 'reconnecting', "alice's reconnect")
        const aliceGot: unknown[] = []
        let aliceReady = false
        alice.subscribe('rooms/cut', {
          message: (d) => aliceGot.push(d),
          subscribed: () => (aliceReady = true),
        })
        proxy.refuse = false
        expect(await queuedRequest).toBe(2)
        await until(() => subscribed === 2 && aliceReady, 'the subscriptions restored')
        // The topic keeps no history: the client says what was published meanwhile is lost.
        expect(gaps).toEqual([{ topic: 'rooms/cut', reason: 'no-history', position: undefined }])
        // Bob's queued publish reached alice (who subscribed while it waited) at most once...
        await new Promise((resolve) => setTimeout(resolve, 100))
        expect(aliceGot.filter((d) => (d as { n?: number }).n === 1).length).toBeLessThanOrEqual(1)
        // ...and a publish after the reconnect reaches bob exactly once.
        expect(await publishFromRoute('cut', { text: 'after', n: 2 })).toBe(2)
        await until(() => got.length === 1, 'the message after the reconnect')
        expect(got).toEqual([{ text: 'after', n: 2 }])
        expect(bob.state.status).toBe('open')
      })

      it('resumes a topic with history across cuts: every message once, in order, and no gap', async () => {
        await fresh()
        const bob = await open('/ws?name=bob')
        const got: number[] = []
        const gaps: Gap[] = []
        let subscribed = 0
        bob.subscribe('feeds/resume', {
          message: (data) => got.push(data.n),
          subscribed: () => subscribed++,
          gap: (gap) => gaps.push(gap),
        })
        await until(() => subscribed === 1, 'the subscription')
        const total = 200
        const publishing = (async () => {
          for (let n = 1; n <= total; n++) {
            const response = await fetch(`${app.url}/feed/resume?n=${n}`, { method: 'POST' })
            expect(response.status).toBe(204)
            await new Promise((resolve) => setTimeout(resolve, 2))
          }
        })()
        for (const at of [40, 120]) {
          await until(() => got.length >= at, `message ${at}`)
          proxy.refuse = true
          proxy.cut()
          await new Promise((resolve) => setTimeout(resolve, 150))
          proxy.refuse = false
        }
        await publishing
        await until(() => got.length >= total && subscribed === 3, 'every message', 20_000)
        expect(got).toEqual(Array.from({ length: total }, (_, i) => i + 1))
        expect(gaps).toEqual([])
        expect(subscribed).toBe(3)
      })

      it('keeps working through a slow network: requests answered, messages in order, no false heartbeat timeout', async () => {
        await fresh()
        proxy.delay = 150
        const client = await open('/ws?name=slow', {
          heartbeatInterval: 300,
          heartbeatTimeout: 1000,
        })
        const seen = states(client)
        const got: number[] = []
        let subscribed = false
        client.subscribe('feeds/slow', {
          message: (data) => got.push(data.n),
          subscribed: () => (subscribed = true),
        })
        await until(() => subscribed, 'the subscription')
        const started = Date.now()
        expect(await client.request('add', { a: 3, b: 4 })).toBe(7)
        expect(Date.now() - started).toBeGreaterThanOrEqual(290)
        for (let n = 1; n <= 20; n++) await fetch(`${app.url}/feed/slow?n=${n}`, { method: 'POST' })
        await until(() => got.length === 20, 'the messages')
        expect(got).toEqual(Array.from({ length: 20 }, (_, i) => i + 1))
        // Idle past several heartbeats, each answered in about 300 ms.
        await new Promise((resolve) => setTimeout(resolve, 1500))
        expect(seen).toEqual([])
      })

      it('keeps the members of a presence topic equal to the server’s across a TCP cut and reconnect', async () => {
        await fresh()
        // The observer and carol come through a proxy of their own, which is never cut.
        const steady = await startProxy(app.url)
        try {
          const member = (path: string) =>
            createClient<typeof channels>(new URL(path, steady.url), { WebSocket: WS })
          const watcher = member('/ws?name=watcher')
          clients.push(watcher)
          const alice = await open('/ws?name=alice')
          const bob = await open('/ws?name=bob')
          const room = 'presence/cut' as const
          const seen: string[] = []
          const subs = {
            watcher: watcher.subscribe(room, {
              message() {},
              presence: (_, diff) => {
                for (const m of diff.leaves) seen.push(`-${m.meta.name}`)
                for (const m of diff.joins) seen.push(`+${m.meta.name}`)
              },
            }),
            alice: alice.subscribe(room, { message() {} }),
            bob: bob.subscribe(room, { message() {} }),
          }
          const names = (sub: { members: ReadonlyMap<string, { name: string }> }) =>
            [...sub.members.values()]
              .map((m) => m.name)
              .sort()
              .join()
          const truth = async () => {
            const response = await fetch(`${app.url}/presence/cut`)
            const members = (await response.json()) as { id: string; meta: { name: string } }[]
            return new Map(members.map((m) => [m.id, m.meta]))
          }
          const converged = async (expected: string) => {
            for (const [name, sub] of Object.entries(subs)) {
              await until(() => names(sub) === expected, `${name}'s list to be ${expected}`)
            }
            const server = await truth()
            for (const sub of Object.values(subs)) expect(sub.members).toEqual(server)
            return server
          }
          const before = await converged('alice,bob')
          expect(subs.watcher.self).toBeUndefined()
          expect(before.get(subs.alice.self as string)).toEqual({ name: 'alice' })
          proxy.refuse = true
          proxy.cut()
          // Their connections are gone: the server's list, and the observer's, lose them.
          await until(() => names(subs.watcher) === '', 'the leaves of the cut members')
          expect((await truth()).size).toBe(0)
          const carol = member('/ws?name=carol')
          clients.push(carol)
          carol.subscribe(room, { message() {} })
          await until(() => names(subs.watcher) === 'carol', "carol's join")
          proxy.refuse = false
          const after = await converged('alice,bob,carol')
          // New connections, new ids: the old ones are listed nowhere.
          expect(after.has(subs.alice.self as string)).toBe(true)
          expect(before.has(subs.alice.self as string)).toBe(false)
          expect(seen.filter((s) => s === '+alice')).toHaveLength(2)
          expect(seen.filter((s) => s === '-alice')).toHaveLength(1)
        } finally {
          await steady.stop()
        }
      })

      it('never reconnects after 1008, nor after a close the server marks "do not retry"', async () => {
        await fresh()
        const policy = await open('/close/1008?reason=go%20away')
        await until(() => policy.state.status === 'closed', 'closed')
        expect(policy.state).toEqual({ status: 'closed', code: 1008, reason: 'go away' })
        const marked = await open('/close/4001?reason=banned&retry=false')
        await until(() => marked.state.status === 'closed', 'closed')
        expect(marked.state).toEqual({ status: 'closed', code: 4001, reason: 'banned' })
        await new Promise((resolve) => setTimeout(resolve, 300))
        expect(proxy.accepted).toBe(2)
        const refused = await marked.request('add', { a: 1, b: 1 }).catch((e) => e)
        expect(refused).toMatchObject({ code: 'closed' })
      })

      it('always reconnects after 1012, and waits the retry-after the server gives', async () => {
        await fresh()
        const client = createClient<typeof channels>(
          new URL('/close/1012?retryAfter=400', proxy.url),
          {
            WebSocket: WS,
            minDelay: 10,
            maxDelay: 20,
          },
        )
        clients.push(client)
        const seen = states(client)
        await until(() => proxy.accepted >= 2, 'a second attempt')
        const first = seen.find((s) => s.status === 'reconnecting')
        expect(first).toMatchObject({ status: 'reconnecting', attempt: 1, code: 1012, delay: 400 })
        client.close()
        expect(client.state).toEqual({ status: 'closed', code: 1000, reason: '' })
      })

      it('fails sends past the bounded queue with a clear error', async () => {
        await fresh()
        proxy.refuse = true
        const client = createClient<typeof channels>(new URL('/ws', proxy.url), {
          WebSocket: WS,
          minDelay: 1000,
          maxDelay: 1000,
          maxQueuedMessages: 2,
          maxQueuedBytes: 200,
        })
        clients.push(client)
        client.publish('rooms/q', { text: 'one' })
        client.publish('rooms/q', { text: 'two' })
        expect(() => client.publish('rooms/q', { text: 'three' })).toThrow(
          /^The send queue is full \(2 frames, \d+ bytes\) while disconnected/,
        )
        const tooBig = await client.request('add', { a: 1, b: 2 }).catch((e) => e)
        expect(tooBig).toMatchObject({ code: 'queue_full' })
      })

      it('reconnects when the heartbeat goes unanswered (a stalled connection)', async () => {
        await fresh()
        const client = await open('/ws', { heartbeatInterval: 200, heartbeatTimeout: 500 })
        const seen = states(client)
        expect(await client.request('add', { a: 1, b: 1 })).toBe(2)
        // Pings are answered while the connection flows.
        await new Promise((resolve) => setTimeout(resolve, 500))
        expect(seen).toEqual([])
        proxy.stall()
        await until(() => seen.some((s) => s.status === 'reconnecting'), 'the heartbeat timeout')
        expect(seen[0]).toMatchObject({
          status: 'reconnecting',
          code: 1006,
          reason: 'No heartbeat within 700 ms',
        })
        await until(() => client.state.status === 'open', 'the new connection')
        expect(await client.request('add', { a: 2, b: 2 })).toBe(4)
      })

      it('closes garbage with 1007 and frames that are not the protocol with 1008', async () => {
        for (const [frame, code] of [
          ['{oops', 1007],
          ['{"type":"teleport"}', 1008],
        ] as const) {
          const ws = new WebSocket(`${app.url.replace('http', 'ws')}/ws`, 'handshake.v1')
          ws.on('error', () => {})
          await new Promise((resolve) => ws.once('open', resolve))
          ws.send(frame)
          const closeCode = await new Promise<number>((resolve) =>
            ws.once('close', (received: number) => resolve(received)),
          )
          expect(closeCode).toBe(code)
        }
      })
    },
  )
}
