/**
 * What history costs over Redis per message (issue 20 §6), where the fan-out workload spreads it
 * over 1,000 deliveries: two hubs in this Node process, each on its own `@handshake/redis`
 * backplane (ioredis) on one redis-server it starts, one subscriber on hub B, and hub A
 * publishing 64-byte messages, 64 in flight. Plain pub/sub against history on (Redis Streams,
 * the last 10,000 kept). Then what Redis keeps per message: `MEMORY USAGE` of a stream of 10,000
 * 64-byte text messages, and of 10,000 64-byte binary ones (random bytes).
 *
 *   node bench/micro/redis-history.mjs
 *
 * CPU: this process's (both hubs, their clients and the test kit's peer) from process.cpuUsage(),
 * and redis-server's from /proc; the best of 5 runs of 20,000 messages (the machine is shared:
 * the least disturbed run is the closest to the code's own cost).
 */
import { readFileSync } from 'node:fs'
import process from 'node:process'
import { upgrade } from '@handshake/core'
import { createHub } from '@handshake/core/adapter'
import { connect } from '@handshake/core/testing'
import { redisBackplane } from '@handshake/redis'
import { Hono } from 'hono'
import { Redis } from 'ioredis'
import { startRedis } from '../lib/redis.mjs'

const N = 20_000
const WARMUP = 2_000
const WINDOW = 64
const RUNS = 5
const KEPT = 10_000
const TEXT = 'x'.repeat(64)

/** redis-server's CPU time so far, in µs (utime + stime of /proc/pid/stat, at 100 Hz). */
function redisCpu(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 10_000
}

const app = new Hono().get(
  '/',
  upgrade({
    async open(conn) {
      await conn.subscribe('bench')
      await conn.send('ready')
    },
  }),
)

async function instance(port, history) {
  const client = new Redis({ port })
  const hub = createHub()
  if (history) hub.topics.useHistory({ history: () => ({ size: KEPT, ttl: 600_000 }) })
  await hub.topics.useBackplane(redisBackplane({ client }))
  return {
    hub,
    async stop() {
      await hub.topics.closeBackplane()
      client.disconnect()
    },
  }
}

/** Publishes `count` messages on A, at most WINDOW ahead of what B's subscriber received. */
async function pump(a, received, count) {
  const start = received.count
  let sent = 0
  while (sent < count) {
    while (sent < count && sent - (received.count - start) < WINDOW) {
      a.hub.topics.publish('bench', TEXT)
      sent++
    }
    await received.next()
  }
  while (received.count - start < count) await received.next()
}

async function measure(redis, history) {
  const a = await instance(redis.port, history)
  const b = await instance(redis.port, history)
  const peer = await connect(app, '/', { hub: b.hub })
  if ((await peer.read()).data !== 'ready') throw new Error('the subscriber did not say ready')
  const received = {
    count: 0,
    waiting: undefined,
    next() {
      return new Promise((resolve) => {
        this.waiting = resolve
      })
    },
  }
  void (async () => {
    for (;;) {
      try {
        await peer.read(60_000)
      } catch {
        return
      }
      received.count++
      const wake = received.waiting
      received.waiting = undefined
      wake?.()
    }
  })()
  await pump(a, received, WARMUP)
  let best
  for (let run = 0; run < RUNS; run++) {
    const cpu = process.cpuUsage()
    const redisBefore = redisCpu(redis.pid)
    const t0 = performance.now()
    await pump(a, received, N)
    const wall = (performance.now() - t0) / 1000
    const used = process.cpuUsage(cpu)
    const result = {
      perS: N / wall,
      nodeUs: (used.user + used.system) / N,
      redisUs: (redisCpu(redis.pid) - redisBefore) / N,
    }
    if (!best || result.nodeUs + result.redisUs < best.nodeUs + best.redisUs) best = result
  }
  peer.vanish?.()
  await a.stop()
  await b.stop()
  return best
}

/** What Redis keeps per message: a stream of KEPT messages of one kind, by MEMORY USAGE. */
async function memory(redis, binary) {
  const topic = binary ? 'memory-bytes' : 'memory-text'
  const a = await instance(redis.port, true)
  const b = await instance(redis.port, true)
  // A subscriber, so that the messages come back and the count is known.
  const peer = await connect(
    new Hono().get(
      '/',
      upgrade({
        async open(conn) {
          await conn.subscribe(topic)
          await conn.send('ready')
        },
      }),
    ),
    '/',
    { hub: b.hub },
  )
  await peer.read()
  let got = 0
  for (let i = 0; i < KEPT; i++) {
    a.hub.topics.publish(
      topic,
      binary
        ? crypto.getRandomValues(new Uint8Array(64))
        : `${TEXT.slice(8)}${String(i).padStart(8, '0')}`,
    )
    while (i + 1 - got > WINDOW) {
      await peer.read(60_000)
      got++
    }
  }
  const stream = `handshake:{h:${topic}}`
  for (let tries = 0; (await redis.probe.xlen(stream)) < KEPT && tries < 500; tries++) {
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  const kept = await redis.probe.xlen(stream)
  const bytes = await redis.probe.call('MEMORY', 'USAGE', stream, 'SAMPLES', '0')
  const hash = await redis.probe.call('MEMORY', 'USAGE', `${stream}:m`, 'SAMPLES', '0')
  peer.vanish?.()
  await a.stop()
  await b.stop()
  return { kept, bytes, perMessage: bytes / kept, hash }
}

const server = await startRedis()
// A client of the bench's own, for INFO, MEMORY USAGE and the like.
const redis = { ...server, probe: new Redis({ port: server.port }) }
try {
  const plain = await measure(redis, false)
  const history = await measure(redis, true)
  const row = (name, r) =>
    console.log(
      `${name.padEnd(34)} ${Math.round(r.perS).toLocaleString('en-US').padStart(7)} msg/s   Node ${r.nodeUs.toFixed(1).padStart(5)} µs/msg   redis-server ${r.redisUs.toFixed(1).padStart(5)} µs/msg`,
    )
  console.log(
    `A publishes 64-byte text to one subscriber on B (two hubs, two ioredis backplanes, one redis-server), ${WINDOW} in flight, best of ${RUNS} × ${N.toLocaleString('en-US')}:`,
  )
  row('plain pub/sub backplane', plain)
  row('history on (Redis Streams)', history)
  console.log(
    `history ÷ plain: Node CPU ${(history.nodeUs / plain.nodeUs).toFixed(2)}×, redis-server CPU ${(history.redisUs / plain.redisUs).toFixed(2)}×, both ${((history.nodeUs + history.redisUs) / (plain.nodeUs + plain.redisUs)).toFixed(2)}×, messages/s ${(history.perS / plain.perS).toFixed(2)}×`,
  )
  for (const binary of [false, true]) {
    const m = await memory(redis, binary)
    console.log(
      `Redis memory per message kept, 64-byte ${binary ? 'binary (random bytes)' : 'text'}: ${Math.round(m.perMessage)} bytes (MEMORY USAGE of the stream: ${m.bytes.toLocaleString('en-US')} bytes for ${m.kept.toLocaleString('en-US')}; the topic's hash: ${m.hash} bytes)`,
    )
  }
} finally {
  await redis.probe.quit()
  await redis.stop()
}
process.exit(0)
