/**
 * What the channel protocol costs over a raw event-controller echo, on Node, in one process: a
 * `@handshake/client` request answered by a `Channels` request handler, against a `ws` client
 * whose message an event controller echoes. Both keep 64 messages in flight on one connection;
 * the figure is CPU time per round trip, client and server together (the protocol's cost is on
 * both sides), and the ratio is the raw echo's time over the request's: the protocol's share of
 * the raw echo's throughput on a CPU-bound machine.
 *
 *   pnpm build && node bench/micro/channels-request.mjs
 *
 * The best of 5 runs of 20,000 round trips each (the machine is shared: the least disturbed run
 * is the closest to the code's own cost). The request's schema is a minimal Standard Schema, so
 * that a validation library's own cost is not counted.
 */
import process from 'node:process'
import { upgrade } from '@handshake/core'
import { CHANNEL_PROTOCOL, Channels } from '@handshake/core/channels'
import { serve } from '@handshake/node'
import { Hono } from 'hono'
import WebSocket from 'ws'
import { createClient } from '../../packages/client/dist/index.js'

const N = 20_000
const WINDOW = 64
const RUNS = 5

/** A Standard Schema that accepts a string. */
const text = {
  '~standard': {
    version: 1,
    vendor: 'bench',
    validate: (value) =>
      typeof value === 'string' ? { value } : { issues: [{ message: 'Expected a string' }] },
  },
}

const app = new Hono()
app.get('/raw', upgrade({ message: (conn, msg) => conn.send(msg.data) }))
const channels = new Channels().request('echo', text, ({ input }) => input)
app.get('/channels', upgrade(channels, { subprotocols: [CHANNEL_PROTOCOL] }))
const server = await serve(app, { port: 0, onListen() {} })
const base = `ws://127.0.0.1:${server.address.port}`
const payload = 'hello, handshake'

async function raw() {
  const ws = new WebSocket(`${base}/raw`)
  await new Promise((resolve) => ws.once('open', resolve))
  const run = () =>
    new Promise((resolve) => {
      let sent = 0
      let received = 0
      ws.on('message', function onMessage() {
        if (++received === N) {
          ws.off('message', onMessage)
          resolve()
        } else if (sent < N) {
          sent++
          ws.send(payload)
        }
      })
      for (; sent < WINDOW; sent++) ws.send(payload)
    })
  const best = await measure(run)
  ws.close()
  return best
}

async function requests() {
  const client = createClient(`${base}/channels`, { WebSocket })
  await new Promise((resolve) => client.onState((state) => state.status === 'open' && resolve()))
  const run = async () => {
    let left = N
    const worker = async () => {
      while (left-- > 0) await client.request('echo', payload)
    }
    await Promise.all(Array.from({ length: WINDOW }, worker))
  }
  const best = await measure(run)
  client.close()
  return best
}

async function measure(run) {
  await run() // warm up
  let best = Number.POSITIVE_INFINITY
  for (let i = 0; i < RUNS; i++) {
    const start = process.cpuUsage()
    await run()
    const used = process.cpuUsage(start)
    best = Math.min(best, (used.user + used.system) / N)
  }
  return best
}

const rawUs = await raw()
const requestUs = await requests()
console.log(`raw event-controller echo     ${rawUs.toFixed(2)} µs CPU per round trip`)
console.log(`channel request and response  ${requestUs.toFixed(2)} µs CPU per round trip`)
console.log(`ratio (raw / request)         ${(rawUs / requestUs).toFixed(2)}`)
await server.shutdown({ timeout: 1000 })
