/**
 * Issue 20 §5: faults against real processes, with history on. Two instances of a runtime, in
 * two processes, on one real redis-server, with each Redis client; `ws` clients publish 100
 * messages per second each way and subscribe with their positions; the fault comes mid-traffic.
 * Each test counts, per client, the messages it lost and the ones it got twice (or got back
 * after it sent them), against what the topic's Redis stream holds at the end, and prints them.
 *
 * ```ts
 * // packages/adapter-x/test/backplane-history.test.ts
 * import { backplaneHistorySuite } from '@handshake/conformance'
 * backplaneHistorySuite({
 *   name: 'x',
 *   // Serves createHistoryApp(), with useRedisBackplane(topics, redisUrl, client, { history: true }).
 *   start: ({ redisUrl, client }) => startMyRuntime(redisUrl, client, 'history'),
 * })
 * ```
 * @module
 */
import net from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { BACKPLANE_CLIENTS, type BackplaneClient } from './backplane.js'
import type { HistoryFrame } from './backplane-setup.js'
import { type RedisOptions, type RedisServer, startRedis } from './redis-server.js'

/** An instance as the history scenarios use it: where it listens, and its SIGKILL. */
export interface HistoryInstance {
  readonly url: string
  /** Kills the process (SIGKILL): no shutdown, connections reset. */
  stop(): Promise<void>
}

/** A runtime that can start instances of the history app on a Redis backplane. */
export interface BackplaneHistoryTarget {
  /** A name for the test titles, such as `'bun'`. */
  name: string
  /**
   * Starts one instance, in its own process: `createHistoryApp()` with its server's topics on
   * `useRedisBackplane(topics, redisUrl, client, { history: true })`, on 127.0.0.1.
   */
  start(options: { redisUrl: string; client: BackplaneClient }): Promise<HistoryInstance>
}

/** One publisher's pace: a message every 10 ms, 100 per second. */
const PUBLISH_EVERY_MS = 10
/** How long a test waits for the clients to catch up once the traffic stopped. */
const SETTLE_MS = 15_000

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`)
    await sleep(20)
  }
}

interface Position {
  epoch: string
  offset: number
}

/**
 * A client of the history app: it subscribes from its last position on each (re)connect,
 * remembers every message and gap notice it was sent, and publishes `id:n` messages.
 */
class HistoryClient {
  /** The data of every message received, in order. */
  readonly received: string[] = []
  /** The gap notices received. */
  readonly gaps: { epoch: string; offset: number; reason: string }[] = []
  /** What each subscription resolved to. */
  readonly subscriptions: { position: Position | null; recovered: boolean }[] = []
  /** The data of every message it handed to an open connection. */
  readonly sent: string[] = []
  /** Messages that came at or before its position (the client's own duplicate check). */
  repeats = 0
  /**
   * Each reconnection from a position, with what it had sent by then: its own messages after
   * that position come back in the recovery (the position a client keeps is that of the last
   * message it received, and it receives none of its own).
   */
  readonly resumed: { since: Position; sent: Set<string> }[] = []
  position: Position | undefined
  #ws: WebSocket | undefined
  #timer: ReturnType<typeof setInterval> | undefined
  #count = 0

  constructor(
    readonly id: string,
    readonly topic: string,
  ) {}

  /** Connects to `baseUrl` from its position; resolves once the app said `subscribed`. */
  connect(baseUrl: string): Promise<void> {
    if (this.position) this.resumed.push({ since: this.position, sent: new Set(this.sent) })
    const query = this.position
      ? `?epoch=${this.position.epoch}&offset=${this.position.offset}`
      : ''
    const ws = new WebSocket(
      `${baseUrl.replace(/^http/, 'ws')}/history/${encodeURIComponent(this.topic)}${query}`,
    )
    this.#ws = ws
    return new Promise((resolve, reject) => {
      ws.on('error', reject)
      ws.on('close', () => {
        if (this.#ws === ws) this.#ws = undefined
        reject(new Error(`${this.id}: closed before it subscribed`))
      })
      ws.on('message', (raw) => {
        const frame = JSON.parse(String(raw)) as HistoryFrame
        if (frame.type === 'subscribed') {
          this.subscriptions.push({ position: frame.position, recovered: frame.recovered })
          if (!this.position && frame.position) this.position = frame.position
          resolve()
          return
        }
        const at = { epoch: frame.epoch, offset: frame.offset }
        if (frame.type === 'gap') {
          this.gaps.push({ ...at, reason: frame.reason })
          this.position = at
          return
        }
        if (this.position?.epoch === at.epoch && at.offset <= this.position.offset) this.repeats++
        else this.position = at
        this.received.push(frame.data)
      })
    })
  }

  /** Publishes `id:n` every {@link PUBLISH_EVERY_MS} while its connection is open. */
  startPublishing(): void {
    this.#timer = setInterval(() => {
      const ws = this.#ws
      if (ws?.readyState !== WebSocket.OPEN) return
      const data = `${this.id}:${this.#count++}`
      ws.send(data)
      this.sent.push(data)
    }, PUBLISH_EVERY_MS)
  }

  stopPublishing(): void {
    clearInterval(this.#timer)
  }

  /** Whether its connection is open. */
  get open(): boolean {
    return this.#ws?.readyState === WebSocket.OPEN
  }

  /** Resolves once its connection is closed (by the server, or cut). */
  closed(): Promise<void> {
    const ws = this.#ws
    if (!ws || ws.readyState === WebSocket.CLOSED) return Promise.resolve()
    return new Promise((resolve) => ws.once('close', () => resolve()))
  }

  /** Drops its connection (no close frame). */
  drop(): void {
    this.#ws?.terminate()
    this.#ws = undefined
  }
}

/** A TCP proxy in front of an instance: `cut()` stops every byte both ways, `sever()` resets. */
async function startProxy(target: string) {
  const { hostname, port } = new URL(target)
  const pairs = new Set<[net.Socket, net.Socket]>()
  let cut = false
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), hostname)
    const pair: [net.Socket, net.Socket] = [client, upstream]
    pairs.add(pair)
    const relay = (from: net.Socket, to: net.Socket) =>
      from.on('data', (chunk) => {
        // A cut network: what is sent is lost, and nothing tells either side.
        if (!cut) to.write(chunk)
      })
    relay(client, upstream)
    relay(upstream, client)
    const end = () => {
      pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    client.on('error', end).on('close', end)
    upstream.on('error', end).on('close', end)
  })
  server.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  const address = server.address() as net.AddressInfo
  return {
    url: `http://127.0.0.1:${address.port}`,
    cut() {
      cut = true
    },
    /** The cut ends as a connection reset, and the proxy carries new connections again. */
    sever() {
      for (const [client, upstream] of pairs) {
        client.resetAndDestroy()
        upstream.resetAndDestroy()
      }
      pairs.clear()
      cut = false
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

/** The stream of a topic's history, as the Redis backplane keeps it: offset and data. */
async function stream(
  redis: RedisServer,
  topic: string,
): Promise<{ offset: number; data: string }[]> {
  const answer = await redis.command('XRANGE', `handshake:{h:${topic}}`, '-', '+')
  if (!Array.isArray(answer)) throw new Error(`Unexpected XRANGE answer: ${String(answer)}`)
  return answer.map((entry) => {
    const [id, fields] = entry as [string, string[]]
    // (The test's messages are ASCII: the raw command's Latin-1 reads them as they are.)
    return { offset: Number.parseInt(id, 10), data: String(fields[1]) }
  })
}

/** What one client lost, got twice, and got back of its own, against the stream. */
interface Count {
  readonly client: string
  readonly expected: number
  readonly received: number
  readonly lost: number
  readonly duplicated: number
  readonly echoed: number
}

/** Counts a client's messages against what it should have received, in order. */
function count(client: HistoryClient, expected: string[]): Count {
  const mine = `${client.id}:`
  const given = new Set(expected)
  const seen = new Map<string, number>()
  for (const data of client.received) seen.set(data, (seen.get(data) ?? 0) + 1)
  let duplicated = client.repeats
  for (const times of seen.values()) if (times > 1) duplicated += times - 1
  return {
    client: client.id,
    expected: expected.length,
    received: client.received.length,
    lost: expected.filter((data) => !seen.has(data)).length,
    duplicated,
    echoed: client.received.filter((data) => data.startsWith(mine) && !given.has(data)).length,
  }
}

/**
 * Registers the fault scenarios with history on: for each Redis client, a redis-server and two
 * instances of the target per test.
 * @param target - how to start an instance of the runtime
 */
export function backplaneHistorySuite(target: BackplaneHistoryTarget): void {
  describe.each(BACKPLANE_CLIENTS)(`faults with history, ${target.name}, with %s`, (client) => {
    let redis: RedisServer | undefined
    const instances: HistoryInstance[] = []
    const clients: HistoryClient[] = []
    const closers: (() => Promise<void>)[] = []
    afterEach(async () => {
      for (const one of clients.splice(0)) {
        one.stopPublishing()
        one.drop()
      }
      await Promise.all(instances.splice(0).map((instance) => instance.stop()))
      for (const close of closers.splice(0)) await close()
      await redis?.stop()
      redis = undefined
    })

    let topicCount = 0
    /** A redis-server, two instances, and a topic of its own. */
    async function setUp(persistence: RedisOptions['persistence'] = 'none') {
      redis = await startRedis({ persistence })
      const redisUrl = `redis://127.0.0.1:${redis.port}`
      const [a, b] = await Promise.all([
        target.start({ redisUrl, client }),
        target.start({ redisUrl, client }),
      ])
      instances.push(a, b)
      const topic = `history-${target.name}-${client}-${process.pid}-${++topicCount}`
      const join = async (id: string, url: string) => {
        const one = new HistoryClient(id, topic)
        clients.push(one)
        await one.connect(url)
        return one
      }
      return { redis, a, b, topic, join }
    }

    /**
     * Stops the traffic, waits until every client has every message of the stream but its own
     * (or the time is up), and counts. `from` leaves out what the stream held before.
     */
    async function settle(server: RedisServer, topic: string, subscribers: HistoryClient[]) {
      for (const one of subscribers) one.stopPublishing()
      // The last messages sent reach the stream.
      await sleep(300)
      const entries = await stream(server, topic)
      const truth = entries.map((entry) => entry.data)
      // Its own messages are not sent back to it, but for those a recovery gives back.
      const expectedOf = (one: HistoryClient) =>
        entries
          .filter(
            ({ offset, data }) =>
              !data.startsWith(`${one.id}:`) ||
              one.resumed.some(({ since, sent }) => offset > since.offset && sent.has(data)),
          )
          .map((entry) => entry.data)
      await until(
        () => subscribers.every((one) => one.received.length >= expectedOf(one).length),
        SETTLE_MS,
        'every client to catch up',
      ).catch(() => {})
      await sleep(200)
      const counts = subscribers.map((one) => count(one, expectedOf(one)))
      const published = subscribers.reduce((sum, one) => sum + one.sent.length, 0)
      const inStream = new Set(truth)
      const neverAppended = subscribers.flatMap((one) => one.sent.filter((d) => !inStream.has(d)))
      return { truth, counts, published, neverAppended, expectedOf }
    }

    /** Each client got every message of the stream but its own, in order, once. */
    function expectZero(
      subscribers: HistoryClient[],
      expectedOf: (one: HistoryClient) => string[],
      counts: Count[],
    ) {
      for (const one of subscribers) {
        expect(one.received, `${one.id}: every message, in order, once`).toEqual(expectedOf(one))
      }
      for (const counted of counts) {
        expect(counted).toMatchObject({ lost: 0, duplicated: 0, echoed: 0 })
      }
    }

    const report = (fault: string, measured: unknown) =>
      console.log(`${target.name}, ${client}: ${fault}: ${JSON.stringify(measured)}`)

    it('Redis SIGKILLed mid-traffic and restarted, appendonly yes (appendfsync always): nothing lost, nothing twice, the same epoch', async () => {
      const { redis: server, a, b, topic, join } = await setUp('aof')
      const onA = await join('pubA', a.url)
      const onB = await join('pubB', b.url)
      const subA = await join('subA', a.url)
      const subB = await join('subB', b.url)
      const all = [onA, onB, subA, subB]
      onA.startPublishing()
      onB.startPublishing()
      await sleep(1000)
      await server.kill()
      await sleep(1000)
      await server.restart()
      await sleep(2000)
      const { counts, published, neverAppended, truth, expectedOf } = await settle(
        server,
        topic,
        all,
      )
      report('Redis SIGKILL, appendfsync always', {
        published,
        inStream: truth.length,
        neverAppended: neverAppended.length,
        counts,
      })
      expectZero(all, expectedOf, counts)
      expect(neverAppended).toEqual([])
      for (const one of all) expect(one.gaps).toEqual([])
    })

    it('Redis SIGKILLed mid-traffic and restarted, without persistence: the epoch changes and every subscriber is told, never a silent gap', async () => {
      const { redis: server, a, b, topic, join } = await setUp('none')
      const onA = await join('pubA', a.url)
      const onB = await join('pubB', b.url)
      const subA = await join('subA', a.url)
      const subB = await join('subB', b.url)
      const all = [onA, onB, subA, subB]
      onA.startPublishing()
      onB.startPublishing()
      await sleep(1000)
      const before = new Map(all.map((one) => [one, one.received.length]))
      const epoch = subA.position?.epoch
      await server.kill()
      await sleep(1000)
      await server.restart()
      await sleep(2000)
      const { truth, expectedOf, published } = await settle(server, topic, all)
      const results = all.map((one) => {
        // Told once, of a new epoch; from then on, every message of the new epoch, once.
        expect(
          one.gaps.map((gap) => gap.reason),
          `${one.id}: the gap notice`,
        ).toEqual(['epoch'])
        expect(one.gaps[0]!.epoch).not.toBe(epoch)
        const after = one.received.slice(one.received.length - expectedOf(one).length)
        expect(after, `${one.id}: the new epoch, in order, once`).toEqual(expectedOf(one))
        const beforeGap = one.received.slice(0, one.received.length - after.length)
        expect(new Set(beforeGap).size, `${one.id}: nothing twice`).toBe(beforeGap.length)
        expect(beforeGap.length).toBeGreaterThanOrEqual(before.get(one)!)
        // What was sent by the others and never arrived: in the lost epoch, told by the gap.
        const got = new Set(one.received)
        const others = all.filter((other) => other !== one).flatMap((other) => other.sent)
        return {
          client: one.id,
          received: one.received.length,
          lostTold: others.filter((data) => !got.has(data)).length,
          duplicated: one.repeats,
          echoed: one.received.filter((data) => data.startsWith(`${one.id}:`)).length,
        }
      })
      report('Redis SIGKILL, no persistence', { published, newEpoch: truth.length, results })
      for (const result of results) expect(result).toMatchObject({ duplicated: 0, echoed: 0 })
    })

    it('the subscriber connections killed (CLIENT KILL TYPE pubsub) mid-traffic: nothing lost, nothing twice', async () => {
      const { redis: server, a, b, topic, join } = await setUp()
      const onA = await join('pubA', a.url)
      const onB = await join('pubB', b.url)
      const subA = await join('subA', a.url)
      const subB = await join('subB', b.url)
      const all = [onA, onB, subA, subB]
      onA.startPublishing()
      onB.startPublishing()
      await sleep(1000)
      expect(await server.command('CLIENT', 'KILL', 'TYPE', 'pubsub')).toBe(2)
      await sleep(1500)
      const { counts, published, neverAppended, expectedOf } = await settle(server, topic, all)
      report('CLIENT KILL TYPE pubsub', { published, neverAppended: neverAppended.length, counts })
      expectZero(all, expectedOf, counts)
      expect(neverAppended).toEqual([])
    })

    it('one instance SIGKILLed while clients publish; its clients reconnect to the other with their positions: nothing lost, nothing twice', async () => {
      const { redis: server, a, b, topic, join } = await setUp()
      const onA = await join('pubA', a.url)
      const onB = await join('pubB', b.url)
      const subA = await join('subA', a.url)
      const subB = await join('subB', b.url)
      const all = [onA, onB, subA, subB]
      onA.startPublishing()
      onB.startPublishing()
      await sleep(1000)
      await a.stop()
      await Promise.all([onA.closed(), subA.closed()])
      await Promise.all([onA.connect(b.url), subA.connect(b.url)])
      await sleep(1500)
      const { counts, published, neverAppended, expectedOf } = await settle(server, topic, all)
      report('instance SIGKILL', {
        published,
        // Sent into the killed instance and never appended: no client without acks can know.
        sentIntoTheKilledInstance: neverAppended.length,
        counts,
      })
      expectZero(all, expectedOf, counts)
      // Only pubA's last messages, sent to A as it died, may be missing.
      expect(neverAppended.every((data) => data.startsWith('pubA:'))).toBe(true)
      for (const one of [onA, subA]) expect(one.subscriptions.at(-1)?.recovered).toBe(true)
    })

    it("a client's TCP connection cut for 10 s, then it reconnects with its position: nothing lost, nothing twice", async () => {
      const { redis: server, a, b, topic, join } = await setUp()
      const proxy = await startProxy(a.url)
      closers.push(proxy.close)
      const onA = await join('pubA', a.url)
      const onB = await join('pubB', b.url)
      const cutOff = await join('cutOff', proxy.url)
      const all = [onA, onB, cutOff]
      onA.startPublishing()
      onB.startPublishing()
      await sleep(1000)
      proxy.cut()
      // (What the proxy relayed just before may still be on its way.)
      await sleep(200)
      const at = cutOff.received.length
      await sleep(10_000)
      // Nothing reached it while cut.
      expect(cutOff.received.length).toBe(at)
      proxy.sever()
      await cutOff.closed()
      await cutOff.connect(proxy.url)
      expect(cutOff.subscriptions.at(-1)?.recovered).toBe(true)
      await sleep(1000)
      const { counts, published, neverAppended, expectedOf } = await settle(server, topic, all)
      report('TCP cut for 10 s', { published, neverAppended: neverAppended.length, counts })
      expectZero(all, expectedOf, counts)
      expect(neverAppended).toEqual([])
    })
  })
}
