/**
 * Whether the upgrade request outlives the upgrade, in Deno with `--v8-flags=--expose-gc`: a
 * middleware keeps a weak reference to the original request; the controller's `open` reads it
 * through `c.req` (the copy); then, the socket open and idle, a few collections run. Prints
 * `{"header": ..., "released": true|false}` and ends by itself. With the argument `serve`, the
 * controller is a `serve` that reads `c` and then waits for messages, holding `c` as it may.
 */
import { upgrade } from '@handshake/core'
import { Hono } from 'hono'
import { serve } from '../src/index.ts'

const gc = (globalThis as { gc?: () => void }).gc
if (!gc) throw new Error('run with --v8-flags=--expose-gc')
let original: WeakRef<Request> | undefined
let header: string | undefined

const app = new Hono()
app.use('/ws', async (c, next) => {
  original = new WeakRef(c.req.raw)
  await next()
})
const mode = (globalThis as { Deno?: { args: string[] } }).Deno?.args[0]
app.get(
  '/ws',
  upgrade(
    mode === 'serve'
      ? {
          async serve(conn, c) {
            header = c.req.header('x-probe')
            await conn.send('opened')
            for await (const _ of conn) header = c.req.header('x-probe')
          },
        }
      : {
          open(conn, c) {
            header = c.req.header('x-probe')
            conn.send('opened')
          },
          message() {},
        },
  ),
)
const server = await serve(app, { port: 0, onListen: () => {} })
const socket = new WebSocket(`ws://127.0.0.1:${server.address.port}/ws`, {
  headers: { 'X-Probe': 'kept' },
} as never)
await new Promise((resolve) => socket.addEventListener('message', resolve, { once: true }))
for (let i = 0; i < 5 && original?.deref(); i++) {
  await new Promise((resolve) => setTimeout(resolve, 20))
  gc()
}
console.log(JSON.stringify({ header, released: original?.deref() === undefined }))
socket.close(1000)
await server.shutdown({ timeout: 2000 })
