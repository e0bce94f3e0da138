/**
 * What history costs in memory (issue 20 §6: at most 1.25× a plain publish): one hub with no
 * backplane, SUBSCRIBERS test-kit connections on one topic, and the hub publishing 64-byte text,
 * without history and with it (`topics.useHistory`, the last 10,000 kept). Then what the hub keeps
 * per message: the heap after a GC with 10,000 messages kept on a topic, against the same hub
 * with none.
 *
 *   node --expose-gc bench/micro/history.mjs
 *
 * CPU: this process's (the hub and its subscribers' test-kit sockets, which read every message)
 * from process.cpuUsage(), per publish; plain and history runs alternate, and each keeps the best
 * of RUNS (the machine is shared: the least disturbed run is the closest to the code's own cost).
 */
import process from 'node:process'
import { upgrade } from '@handshake/core'
import { createHub } from '@handshake/core/adapter'
import { connect } from '@handshake/core/testing'
import { Hono } from 'hono'

const SUBSCRIBERS = 10
const N = 50_000
const RUNS = 7
const KEPT = 10_000
const TEXT = 'x'.repeat(64)

if (typeof globalThis.gc !== 'function') throw new Error('run with node --expose-gc')

const app = new Hono().get(
  '/',
  upgrade({
    async open(conn) {
      await conn.subscribe('bench')
      await conn.send('ready')
    },
  }),
)

/** A hub, with history or not, and its subscribers, each reading everything it is sent. */
async function setup(history) {
  const hub = createHub()
  if (history) hub.topics.useHistory({ history: () => ({ size: KEPT, ttl: 600_000 }) })
  const peers = []
  for (let i = 0; i < SUBSCRIBERS; i++) {
    const peer = await connect(app, '/', { hub })
    if ((await peer.read()).data !== 'ready') throw new Error('a subscriber did not say ready')
    peers.push(peer)
  }
  return { hub, peers }
}

/** Publishes `count` messages, each read by every subscriber before the next. */
async function pump({ hub, peers }, count) {
  for (let i = 0; i < count; i++) {
    hub.topics.publish('bench', TEXT)
    for (const peer of peers) await peer.read()
  }
}

async function cpuPerPublish(setupOf) {
  const cpu = process.cpuUsage()
  await pump(setupOf, N)
  const used = process.cpuUsage(cpu)
  return (used.user + used.system) / N
}

const plain = await setup(false)
const history = await setup(true)
await pump(plain, 2_000)
await pump(history, 2_000)
const best = { plain: Infinity, history: Infinity }
for (let run = 0; run < RUNS; run++) {
  for (const [name, s] of run % 2
    ? [
        ['history', history],
        ['plain', plain],
      ]
    : [
        ['plain', plain],
        ['history', history],
      ]) {
    best[name] = Math.min(best[name], await cpuPerPublish(s))
  }
}
console.log(
  `One hub, ${SUBSCRIBERS} test-kit subscribers, 64-byte text, each publish read by all before the next; best of ${RUNS} × ${N.toLocaleString('en-US')}:`,
)
console.log(`plain publish                ${best.plain.toFixed(2).padStart(6)} µs CPU per publish`)
console.log(
  `history on (memory, last ${KEPT.toLocaleString('en-US')}) ${best.history.toFixed(2).padStart(6)} µs CPU per publish`,
)
console.log(
  `history ÷ plain: ${(best.history / best.plain).toFixed(2)}× (issue 20's target: at most 1.25×)`,
)

/** Heap after a full GC. */
function heap() {
  globalThis.gc()
  globalThis.gc()
  return process.memoryUsage().heapUsed
}
// Per message kept: a topic with no subscriber, so only the history holds the messages.
const kept = createHub()
kept.topics.useHistory({ history: () => ({ size: KEPT, ttl: 600_000 }) })
kept.topics.publish('memory', 'warm')
const before = heap()
for (let i = 0; i < KEPT; i++)
  kept.topics.publish('memory', `${TEXT.slice(8)}${String(i).padStart(8, '0')}`)
const after = heap()
console.log(
  `Heap per message kept, 64-byte text: ${Math.round((after - before) / KEPT)} bytes (the message's string included; ${KEPT.toLocaleString('en-US')} kept on one topic)`,
)
for (const s of [plain, history]) for (const peer of s.peers) peer.vanish?.()
process.exit(0)
