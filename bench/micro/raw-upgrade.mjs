/**
 * What one upgrade costs the core and Hono on Node's path, in CPU time: `RawUpgrades` answering
 * a parsed head (the app's fetch, Hono's router and `Context`, the core's checks, the 101's
 * `Response` and its header lines) up to the runtime's `complete()`. The connection is an
 * `EventEmitter` and the upgrade is abandoned there, so no socket, no `ws` and no `Conn` is
 * counted: compare it with `churn.mjs`, which counts the `Conn` and the close through the test
 * kit's request.
 *
 *   node bench/micro/raw-upgrade.mjs
 *
 * The best of 9 runs of 5,000 upgrades (CHURN_N), one at a time, from process.cpuUsage().
 */
import { EventEmitter } from 'node:events'
import process from 'node:process'
import { upgrade } from '@handshake/core'
import { ADAPTER, createHub, deferredUpgrade, RawUpgrades } from '@handshake/core/adapter'
import { Hono } from 'hono'

const N = Number(process.env.CHURN_N ?? 5000)

class FakeSocket extends EventEmitter {
  destroyed = false
  readableEnded = false
  write() {
    return true
  }
  end() {}
  resume() {}
  unshift() {}
  destroy() {}
}

const hub = createHub()
const adapter = { name: 'bench', hub: () => hub, upgrade: deferredUpgrade('unreachable') }
const app = new Hono().get('/', upgrade({ async serve() {} }))
let completed
const upgrades = new RawUpgrades({
  fetch: (request, env) => app.fetch(request, Object.assign(env, { [ADAPTER]: adapter })),
  passOn: () => false,
  complete(accepted) {
    accepted.abandon()
    completed()
    return true
  },
})
const rawHeaders = ['Host', '127.0.0.1:9000', 'Upgrade', 'websocket', 'Connection', 'Upgrade']
rawHeaders.push('Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version', '13')
const empty = new Uint8Array()

function once() {
  return new Promise((resolve) => {
    completed = resolve
    const socket = new FakeSocket()
    upgrades.answer({ url: '/', method: 'GET', rawHeaders, socket }, socket, empty, {})
  })
}

for (let i = 0; i < 2000; i++) await once()
let best = Number.POSITIVE_INFINITY
for (let round = 0; round < 9; round++) {
  const start = process.cpuUsage()
  for (let i = 0; i < N; i++) await once()
  const used = process.cpuUsage(start)
  best = Math.min(best, (used.user + used.system) / N)
}
console.log(`${'raw upgrade (Node path), abandoned'.padEnd(40)} ${best.toFixed(2)} µs per upgrade`)
