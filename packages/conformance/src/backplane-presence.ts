/**
 * Issue 22 §5: presence's faults against real processes. Two instances of a runtime, in two
 * processes, on one real redis-server, with each Redis client and a short heartbeat
 * ({@link PRESENCE_TEST_INTERVAL}); `ws` clients join a topic as members on both. After each
 * fault, each instance's `topics.presence(topic)` (polled over HTTP) must list exactly the members
 * still connected, each once, within the bound the fault has; the time it took is printed.
 *
 * ```ts
 * // packages/adapter-x/test/backplane-presence.test.ts
 * import { backplanePresenceSuite } from '@handshake/conformance'
 * backplanePresenceSuite({
 *   name: 'x',
 *   // Serves createPresenceApp(() => server.topics), with
 *   // useRedisBackplane(topics, redisUrl, client, { presence: true }).
 *   start: ({ redisUrl, client }) => startMyRuntime(redisUrl, client, 'presence'),
 * })
 * ```
 * @module
 */
import net from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { BACKPLANE_CLIENTS, type BackplaneClient } from './backplane.js'
import { PRESENCE_TEST_INTERVAL } from './backplane-setup.js'
import { type RedisServer, startRedis } from './redis-server.js'

/** An instance as the presence scenarios use it: where it listens, and its SIGKILL. */
export interface PresenceInstance {
  readonly url: string
  /** Kills the process (SIGKILL): no shutdown, connections reset. */
  stop(): Promise<void>
}

/** A runtime that can start instances of the presence app on a Redis backplane. */
export interface BackplanePresenceTarget {
  /** A name for the test titles, such as `'bun'`. */
  name: string
  /**
   * Starts one instance, in its own process: `createPresenceApp(() => server.topics)` with its
   * server's topics on `useRedisBackplane(topics, redisUrl, client, { presence: true })`, on
   * 127.0.0.1.
   */
  start(options: { redisUrl: string; client: BackplaneClient }): Promise<PresenceInstance>
}

/**
 * The documented bound on a dead instance's members: 4 heartbeats. Asserted with
 * {@link SLACK_MS} of room: the instances' timers fire late on a busy 2-core machine, and the
 * leave takes a round trip to Redis and one to the other instance, then the poll's.
 */
const DEAD_INSTANCE_MS = 4 * PRESENCE_TEST_INTERVAL
const SLACK_MS = 500
/**
 * After Redis is back: the backplane restores within its `maxReconnectDelay` (1 s), once the
 * app's own client answers a PING, which reconnects on its own schedule: ioredis waits up to
 * 5 s (plus 200 ms of jitter) between attempts by default, node-redis up to 2 s (plus 200 ms).
 * Then the members are asserted, and each view read again.
 */
const RESTORED_MS = { ioredis: 5200 + 1000, 'node-redis': 2200 + 1000 } as const
/** A local leave or join reaches the other instance through Redis in a round trip or two. */
const DIFF_MS = 500

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** A TCP proxy in front of an instance: `reset()` resets every connection through it. */
async function startProxy(target: string) {
  const { hostname, port } = new URL(target)
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), hostname)
    sockets.add(client).add(upstream)
    client.pipe(upstream).pipe(client)
    const end = () => {
      sockets.delete(client)
      sockets.delete(upstream)
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
    /** The connection is cut: both sides get a reset, as when a network path dies loudly. */
    reset() {
      for (const socket of sockets) socket.resetAndDestroy()
      sockets.clear()
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

/** A member (or an observer, without a name) of a topic on an instance, over a WebSocket. */
async function joinAs(baseUrl: string, topic: string, name?: string): Promise<WebSocket> {
  const query = name === undefined ? '' : `?name=${encodeURIComponent(name)}`
  const ws = new WebSocket(
    `${baseUrl.replace(/^http/, 'ws')}/presence/${encodeURIComponent(topic)}${query}`,
  )
  await new Promise<void>((resolve, reject) => {
    ws.once('error', reject)
    ws.once('close', () => reject(new Error(`${name ?? 'observer'}: closed before subscribed`)))
    ws.once('message', (raw) => {
      if (JSON.parse(String(raw)).type === 'subscribed') resolve()
      else reject(new Error(`${name}: unexpected first frame ${String(raw)}`))
    })
  })
  ws.on('error', () => {})
  return ws
}

/** What an instance's `topics.presence(topic)` lists: the members' names, or an error. */
async function listed(baseUrl: string, topic: string): Promise<string[] | Error> {
  try {
    const response = await fetch(`${baseUrl}/members/${encodeURIComponent(topic)}`)
    if (!response.ok) return new Error(`${response.status}: ${await response.text()}`)
    const members = (await response.json()) as { id: string; meta: { name: string } }[]
    const ids = new Set(members.map((member) => member.id))
    // Nobody twice: neither an id nor a name.
    if (ids.size !== members.length) return new Error(`an id twice: ${JSON.stringify(members)}`)
    const names = members.map((member) => member.meta.name).sort()
    if (new Set(names).size !== names.length) {
      return new Error(`a name twice: ${JSON.stringify(members)}`)
    }
    return names
  } catch (err) {
    return err as Error
  }
}

/**
 * Polls the instances until each lists exactly `expected`, and returns how long it took (ms,
 * from `since`); fails after `timeoutMs` with what each listed, and at once when one lists
 * someone twice.
 */
async function converged(
  urls: string[],
  topic: string,
  expected: string[],
  since: number,
  timeoutMs: number,
): Promise<number> {
  const want = [...expected].sort().join()
  const deadline = since + timeoutMs
  for (;;) {
    const lists = await Promise.all(urls.map((url) => listed(url, topic)))
    for (const list of lists) {
      if (list instanceof Error && /twice/.test(list.message)) throw list
    }
    if (lists.every((list) => Array.isArray(list) && list.join() === want)) {
      return Date.now() - since
    }
    if (Date.now() > deadline) {
      throw new Error(
        `The views did not converge to [${want}] in ${timeoutMs} ms: ${lists.map((list) => (Array.isArray(list) ? `[${list.join()}]` : String(list))).join(' and ')}`,
      )
    }
    await sleep(20)
  }
}

/**
 * Registers presence's fault scenarios: for each Redis client, a redis-server and two instances
 * of the target per test.
 * @param target - how to start an instance of the runtime
 */
export function backplanePresenceSuite(target: BackplanePresenceTarget): void {
  describe.each(BACKPLANE_CLIENTS)(`presence faults, ${target.name}, with %s`, (client) => {
    let redis: RedisServer | undefined
    const instances: PresenceInstance[] = []
    const sockets: WebSocket[] = []
    const closers: (() => Promise<void>)[] = []
    afterEach(async () => {
      for (const ws of sockets.splice(0)) ws.terminate()
      await Promise.all(instances.splice(0).map((instance) => instance.stop()))
      for (const close of closers.splice(0)) await close()
      await redis?.stop()
      redis = undefined
    })

    let topicCount = 0
    /** A redis-server, two instances, a topic, and 3 members on each instance. */
    async function setUp() {
      redis = await startRedis()
      const redisUrl = `redis://127.0.0.1:${redis.port}`
      const [a, b] = await Promise.all([
        target.start({ redisUrl, client }),
        target.start({ redisUrl, client }),
      ])
      instances.push(a, b)
      const topic = `presence-${target.name}-${client}-${process.pid}-${++topicCount}`
      const join = async (url: string, name?: string) => {
        const ws = await joinAs(url, topic, name)
        sockets.push(ws)
        return ws
      }
      // An observer on each, so that each holds the topic whatever its members do.
      await join(a.url)
      await join(b.url)
      const onA = ['a1', 'a2', 'a3']
      const onB = ['b1', 'b2', 'b3']
      const members = new Map<string, WebSocket>()
      for (const name of onA) members.set(name, await join(a.url, name))
      for (const name of onB) members.set(name, await join(b.url, name))
      await converged([a.url, b.url], topic, [...onA, ...onB], Date.now(), 5000)
      return { redis, a, b, topic, join, members, onA, onB }
    }

    const report = (fault: string, measured: unknown) =>
      console.log(`${target.name}, ${client}: presence, ${fault}: ${JSON.stringify(measured)}`)

    it(`an instance SIGKILLed: its members leave the other's view within 4 heartbeats (${DEAD_INSTANCE_MS} ms), nobody twice`, async () => {
      const { a, b, topic, onB } = await setUp()
      // A heartbeat past, so that A's deadline is its usual distance ahead.
      await sleep(PRESENCE_TEST_INTERVAL * 1.5)
      const killed = Date.now()
      await a.stop()
      instances.splice(instances.indexOf(a), 1)
      const took = await converged([b.url], topic, onB, killed, DEAD_INSTANCE_MS + SLACK_MS + 5000)
      report('instance SIGKILL', { tookMs: took, boundMs: DEAD_INSTANCE_MS })
      expect(took).toBeLessThanOrEqual(DEAD_INSTANCE_MS + SLACK_MS)
    })

    it('Redis SIGKILLed and restarted: every member asserted again, both views converge, nobody twice', async () => {
      const { redis: server, a, b, topic, onA, onB, members } = await setUp()
      await server.kill()
      // A change during the outage: a member leaves A (its leave cannot reach Redis).
      members.get('a3')!.close()
      await sleep(1000)
      const restarted = Date.now()
      await server.restart()
      const expected = [...onA.filter((name) => name !== 'a3'), ...onB]
      const took = await converged([a.url, b.url], topic, expected, restarted, RESTORED_MS[client])
      report('Redis SIGKILL and restart', { tookMs: took, boundMs: RESTORED_MS[client] })
      // And it stays so (no late duplicate, no late leave).
      await sleep(PRESENCE_TEST_INTERVAL * 4)
      await converged([a.url, b.url], topic, expected, Date.now(), 1)
    })

    it('the subscriber connections killed (CLIENT KILL TYPE pubsub): what changed meanwhile reaches both views, nobody twice', async () => {
      const { redis: server, a, b, topic, join, onA, onB, members } = await setUp()
      const killedAt = Date.now()
      const killed = await server.command('CLIENT', 'KILL', 'TYPE', 'pubsub')
      expect(killed).toBeGreaterThanOrEqual(2)
      members.get('b1')!.close()
      await join(a.url, 'a4')
      const expected = [...onA, 'a4', ...onB.filter((name) => name !== 'b1')]
      const took = await converged([a.url, b.url], topic, expected, killedAt, 1000 + 1000)
      report('CLIENT KILL TYPE pubsub', { tookMs: took })
    })

    it("a client's TCP connection cut: its member leaves both views once the server sees the close", async () => {
      const { a, b, topic, onA, onB, proxy } = await setUpThroughProxy()
      const cut = Date.now()
      // a1's connection runs through the proxy: both ends get a reset.
      proxy.reset()
      const expected = [...onA.filter((name) => name !== 'a1'), ...onB]
      const took = await converged([a.url, b.url], topic, expected, cut, DIFF_MS + SLACK_MS)
      report("a client's TCP connection cut (reset)", { tookMs: took })
    })

    /** As {@link setUp}, with member a1 connected to A through a proxy. */
    async function setUpThroughProxy() {
      redis = await startRedis()
      const redisUrl = `redis://127.0.0.1:${redis.port}`
      const [a, b] = await Promise.all([
        target.start({ redisUrl, client }),
        target.start({ redisUrl, client }),
      ])
      instances.push(a, b)
      const proxy = await startProxy(a.url)
      closers.push(proxy.close)
      const topic = `presence-${target.name}-${client}-${process.pid}-${++topicCount}`
      const join = async (url: string, name?: string) => {
        const ws = await joinAs(url, topic, name)
        sockets.push(ws)
        return ws
      }
      await join(a.url)
      await join(b.url)
      const onA = ['a1', 'a2', 'a3']
      const onB = ['b1', 'b2', 'b3']
      await join(proxy.url, 'a1')
      await join(a.url, 'a2')
      await join(a.url, 'a3')
      for (const name of onB) await join(b.url, name)
      await converged([a.url, b.url], topic, [...onA, ...onB], Date.now(), 5000)
      return { a, b, topic, onA, onB, proxy }
    }
  })
}
