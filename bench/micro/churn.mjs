/**
 * What one connection's whole life costs the core, in CPU time, on the runtime that runs this
 * file: the upgrade through Hono (its router and `Context`), the core's checks, the 101, the
 * `Conn`, then the peer's close (1000) and the end (the `CloseError`, the registry). The
 * connections are the test kit's in-memory ones (`@handshake/core/testing`), so no socket and no
 * runtime WebSocket is counted: only what Handshake and Hono add to a connection's churn.
 *
 *   node bench/micro/churn.mjs
 *   deno run --allow-read --allow-env bench/micro/churn.mjs
 *   bun bench/micro/churn.mjs
 *
 * A `serve` echo (`for await`) and an event-controller echo, each opened and closed by the
 * peer, one at a time. CPU time from process.cpuUsage(), the best of 7 runs of 2,000 (the
 * machine is shared: the least disturbed run is the closest to the code's own cost).
 */
import process from 'node:process'
import { upgrade } from '@handshake/core'
import { connect } from '@handshake/core/testing'
import { Hono } from 'hono'

const N = Number(process.env.CHURN_N ?? 2000)

const serveApp = new Hono().get(
  '/',
  upgrade({
    async serve(conn) {
      for await (const msg of conn) await conn.send(msg.data)
    },
  }),
)
const eventsApp = new Hono().get(
  '/',
  upgrade({
    message(conn, msg) {
      return conn.send(msg.data)
    },
  }),
)

async function once(app) {
  const peer = await connect(app)
  peer.close(1000)
  await peer.closed
}

async function bench(name, app) {
  for (let i = 0; i < 500; i++) await once(app)
  let best = Number.POSITIVE_INFINITY
  for (let round = 0; round < 7; round++) {
    const start = process.cpuUsage()
    for (let i = 0; i < N; i++) await once(app)
    const used = process.cpuUsage(start)
    best = Math.min(best, (used.user + used.system) / N)
  }
  console.log(`${name.padEnd(40)} ${best.toFixed(2)} µs per connection`)
}

await bench('serve (for await), peer closes', serveApp)
await bench('events (message), peer closes', eventsApp)
