/**
 * The adapter's bound on `bufferedAmount` (`bufferedAtMost`), against what Deno really counts.
 * The core skips reading `bufferedAmount` while that bound is within its limit, so a bound below
 * Deno's count (a Deno that counted frame headers, or UTF-8 past 3 bytes a UTF-16 unit) would let
 * back-pressure and the slow-subscriber bound slip silently. The adapter's socket is taken from
 * its port (`open`), sends each sample, and after each the bound must be at least Deno's count;
 * a read of `bufferedAmount` must reset the bound to it. Deno's write tasks run only when the
 * event loop turns, so nothing is written during the synchronous sends. Prints one JSON line.
 */
import type * as port from '@handshake/core/adapter'
import { adapter } from '../src/index.ts'

const bytes = new Uint8Array(64).fill(7)
const samples: [string, string | Uint8Array][] = [
  ['ascii', 'hello'],
  ['empty', ''],
  ['two-byte', 'é'.repeat(100)],
  ['three-byte', '€'.repeat(100)],
  ['astral', '😀'.repeat(100)],
  ['lone surrogate', '\ud800x\udfff'],
  ['long ascii', 'x'.repeat(70_000)],
  ['binary', bytes],
  ['binary view', bytes.subarray(8, 24)],
  ['large binary', new Uint8Array(200_000)],
]

/** The part of the `Deno` namespace this script uses (no Deno types in the package). */
interface DenoServe {
  serve(
    options: { port: number; hostname: string; onListen: () => void },
    handler: (request: Request) => Response | Promise<Response>,
  ): { addr: { port: number }; shutdown(): Promise<void> }
}
const { Deno } = globalThis as unknown as { Deno: DenoServe }

let settle: { resolve(report: object): void; reject(error: Error): void } | undefined
const report = new Promise<object>((resolve, reject) => {
  settle = { resolve, reject }
})
function measure(socket: port.RuntimeSocket): void {
  const below: string[] = []
  let counted = 0
  for (const [name, data] of samples) {
    socket.send(data)
    const atMost = socket.bufferedAtMost ?? -1
    // The read resets the bound to Deno's count, so each sample is judged on its own.
    const real = socket.bufferedAmount
    counted = real
    if (atMost < real) below.push(`${name}: bound ${atMost} < bufferedAmount ${real}`)
    if (socket.bufferedAtMost !== real) below.push(`${name}: the read did not reset the bound`)
  }
  socket.close(1000, 'done')
  settle?.resolve({ below, counted: counted > 0 })
}
const noop = () => {}
const server = Deno.serve({ port: 0, hostname: '127.0.0.1', onListen: noop }, (request) => {
  const upgrade: port.UpgradeRequest = {
    headers: new Headers(),
    protocol: undefined,
    maxMessageSize: 1 << 20,
    maxPublishBuffer: 1 << 20,
    url: request.url,
    events: true,
    open(socket) {
      queueMicrotask(() => measure(socket))
      const ended = Promise.resolve()
      return { message: noop, closed: noop, error: noop, drain: noop, pong: noop, ended }
    },
    abandon: () => settle?.reject(new Error('abandoned')),
  }
  return adapter.upgrade({ req: { raw: request } } as never, upgrade)
})
const client = new WebSocket(`ws://127.0.0.1:${server.addr.port}/`)
console.log(JSON.stringify(await report))
client.close()
await server.shutdown()
