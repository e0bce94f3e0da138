/**
 * What presence costs Redis (issue 22): Redis commands per member per minute, and Redis memory
 * per member. Two `@handshake/redis` backplanes (instances) in this Node process, on one
 * redis-server it starts, with the default heartbeat (`presenceInterval`, 5 s), each with a
 * hand-made sink that keeps its members as the core does; for each client (ioredis, node-redis)
 * and each workload, Redis's own count of the commands it ran (`INFO commandstats`, reset with
 * `CONFIG RESETSTAT` when the window starts) over a window of WINDOW_S seconds, per member and
 * scaled to a minute:
 * - idle: 1,000 members per instance in one topic, nobody joins or leaves;
 * - spread: 1,000 members per instance over 100 topics (10 per topic per instance);
 * - churn: 1,000 members per instance in one topic, each leaving once a minute and joining
 *   again half a minute later (one leave and one join every 60 ms per instance).
 * Then what Redis keeps per member: `MEMORY USAGE` of an instance's hash of 1,000 members with
 * a small metadata (`{"name":"user-N"}`) and of the topic's index.
 *
 *   pnpm build && node bench/micro/redis-presence.mjs            # WINDOW_S=60
 *   WINDOW_S=20 node bench/micro/redis-presence.mjs              # a shorter window, scaled
 */
import process from 'node:process'
import { redisBackplane } from '@handshake/redis'
import { Redis } from 'ioredis'
import { createClient } from 'redis'
import { startRedis } from '../lib/redis.mjs'

const WINDOW_S = Number(process.env.WINDOW_S ?? 60)
const MEMBERS = 1000
const INSTANCES = 2

async function client(kind, port) {
  if (kind === 'ioredis') {
    const redis = new Redis({ port })
    redis.on('error', () => {})
    return { client: redis, close: () => redis.disconnect() }
  }
  const redis = createClient({ url: `redis://127.0.0.1:${port}` })
  redis.on('error', () => {})
  await redis.connect()
  return { client: redis, close: () => redis.destroy() }
}

/** An instance: a backplane whose sink keeps its members, as the core's `members()` answers. */
async function instance(kind, port) {
  const app = await client(kind, port)
  const backplane = redisBackplane({ client: app.client })
  const local = new Map()
  const held = new Set()
  await backplane.start({
    message() {},
    down() {},
    up() {},
    topics: () => [...held],
    presence() {},
    members: (topic) => [...(local.get(topic)?.values() ?? [])],
  })
  return {
    backplane,
    async hold(topic) {
      held.add(topic)
      await backplane.subscribe(topic)
      await backplane.presence.read(topic)
    },
    join(topic, id) {
      const member = { id, meta: { name: id } }
      if (!local.has(topic)) local.set(topic, new Map())
      local.get(topic).set(id, member)
      backplane.presence.join(topic, member)
    },
    leave(topic, id) {
      local.get(topic)?.delete(id)
      backplane.presence.leave(topic, id)
    },
    async stop() {
      await backplane.close()
      app.close()
    },
  }
}

/** Redis's count of every command it ran since the last reset, by name. */
async function commands(probe) {
  const info = await probe.info('commandstats')
  const counts = {}
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    counts[match[1]] = Number(match[2])
  }
  return counts
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function workload(redis, kind, name) {
  const instances = []
  for (let i = 0; i < INSTANCES; i++) instances.push(await instance(kind, redis.port))
  const topicOf = (m) => (name === 'spread' ? `room-${m % 100}` : 'room')
  const topics = new Set(Array.from({ length: MEMBERS }, (_, m) => topicOf(m)))
  for (const one of instances) for (const topic of topics) await one.hold(topic)
  instances.forEach((one, i) => {
    for (let m = 0; m < MEMBERS; m++) one.join(topicOf(m), `${kind}-${i}-${m}`)
  })
  // Settled: every join answered, a heartbeat past.
  await sleep(6000)
  let churn
  if (name === 'churn') {
    // Each member leaves once a minute and joins again half a minute later: per instance,
    // MEMBERS leaves and MEMBERS joins a minute, one of each every 60 ms.
    let next = 0
    churn = setInterval(() => {
      const away = next++ % MEMBERS
      const back = (away + MEMBERS / 2) % MEMBERS
      for (const [i, one] of instances.entries()) {
        one.leave(topicOf(away), `${kind}-${i}-${away}`)
        if (next > MEMBERS / 2) one.join(topicOf(back), `${kind}-${i}-${back}`)
      }
    }, 60_000 / MEMBERS)
    // Half a minute in, every tick has a leave and a join.
    await sleep(31_000)
  }
  await redis.probe.config('RESETSTAT')
  await sleep(WINDOW_S * 1000)
  const counts = await commands(redis.probe)
  clearInterval(churn)
  // The probe's own INFO and RESETSTAT are not the workload's.
  delete counts.info
  delete counts['config|resetstat']
  const total = Object.values(counts).reduce((sum, n) => sum + n, 0)
  const scripts = (counts.evalsha ?? 0) + (counts.eval ?? 0)
  const scale = 60 / WINDOW_S / (INSTANCES * MEMBERS)
  for (const one of instances) await one.stop()
  return { total, scripts, perMember: total * scale, scriptsPerMember: scripts * scale, counts }
}

async function memory(redis) {
  const one = await instance('ioredis', redis.port)
  await one.hold('memory')
  for (let m = 0; m < MEMBERS; m++) one.join('memory', `user-${m}`)
  const index = 'handshake:{p:memory}'
  const hash = `${index}:${one.backplane.instanceId}`
  for (let tries = 0; (await redis.probe.hlen(hash)) < MEMBERS && tries < 500; tries++) {
    await sleep(10)
  }
  const hashBytes = await redis.probe.call('MEMORY', 'USAGE', hash, 'SAMPLES', '0')
  const indexBytes = await redis.probe.call('MEMORY', 'USAGE', index, 'SAMPLES', '0')
  await one.stop()
  return { hashBytes, indexBytes }
}

const server = await startRedis()
// A client of the bench's own, for INFO, MEMORY USAGE and the like.
const redis = { ...server, probe: new Redis({ port: server.port }) }
try {
  console.log(
    `Redis commands per member per minute (${INSTANCES} instances × ${MEMBERS} members, presenceInterval 5000 ms, a ${WINDOW_S} s window)`,
  )
  console.log(
    '(calls: the scripts the clients sent, EVALSHA and EVAL; all: those and every command they ran inside Redis, as INFO commandstats counts them)',
  )
  console.log(
    '| client | workload | calls | per member per minute | all | per member per minute | all, by command |',
  )
  console.log('| --- | --- | --- | --- | --- | --- | --- |')
  for (const kind of ['ioredis', 'node-redis']) {
    for (const name of ['idle', 'spread', 'churn']) {
      const r = await workload(redis, kind, name)
      const by = Object.entries(r.counts)
        .map(([command, n]) => `${command} ${n}`)
        .join(', ')
      console.log(
        `| ${kind} | ${name} | ${r.scripts} | ${r.scriptsPerMember.toFixed(3)} | ${r.total} | ${r.perMember.toFixed(3)} | ${by} |`,
      )
    }
  }
  const { hashBytes, indexBytes } = await memory(redis)
  console.log(
    `\nRedis memory: an instance's hash of ${MEMBERS} members ${hashBytes} bytes (${(hashBytes / MEMBERS).toFixed(1)} per member); the topic's index ${indexBytes} bytes`,
  )
} finally {
  redis.probe.disconnect()
  await redis.stop()
}
process.exit(0)
