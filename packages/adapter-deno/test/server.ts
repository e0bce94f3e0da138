/**
 * The Deno entry the tests start: `deno run test/server.ts`. It serves the conformance app plus
 * the Deno-specific routes under `/deno/`, through this package's `serve`, on 127.0.0.1 and the
 * port the OS picks, with two more servers of the same app: a sibling (a second hub, for the
 * suite's isolation scenario) and one with Deno's `idleTimeout` at 1 s. It prints one JSON line
 * per event on stdout: `{"listening": port, "sibling": port, "idle": port}` first,
 * then `{"report": id, ...}` lines from the Deno routes, which the test reads. It takes the
 * suite's commands on stdin (`conformance/src/control.ts`): its shutdown, and its reports.
 * @module
 */
import {
  CloseError,
  type Conn,
  type Controller,
  type HeaderUpgrader,
  upgrade,
} from '@handshake/core'
import { Hono } from 'hono'
// The conformance package is not a dependency of this one (a relative import keeps the package's
// manifest unchanged); it imports only hono and @handshake/core, which resolve to the same files.
import { createConformanceApp } from '../../conformance/src/app.ts'
import { answerControl } from '../../conformance/src/control.ts'
import { serve } from '../src/index.ts'

function emit(line: Record<string, unknown>): void {
  console.log(JSON.stringify(line))
}

/** Reads until the end and reports the CloseError `serve` saw. */
async function readToEnd(conn: Conn, id: string): Promise<void> {
  let messages = 0
  try {
    for (;;) {
      await conn.read()
      messages++
    }
  } catch (err) {
    const end = err instanceof CloseError ? err : undefined
    emit({
      report: id,
      messages,
      code: end?.code,
      reason: end?.reason,
      wasClean: end?.wasClean,
      error: end ? undefined : String(err),
    })
  }
}

const deno = new Hono()

// The peer closes with any code and reason; `serve` must see both intact.
deno.get('/read-close', upgrade({ serve: (conn, c) => readToEnd(conn, c.req.query('id') ?? '') }))

// The server closes with the code and reason in the query; the peer must see both intact.
deno.get(
  '/server-close',
  upgrade({
    async serve(conn, c) {
      const code = Number(c.req.query('code'))
      const reason = c.req.query('reason') ?? ''
      const started = Date.now()
      await conn.close(code, reason)
      emit({ report: c.req.query('id'), closeMs: Date.now() - started, state: conn.state })
      await readToEnd(conn, `${c.req.query('id')}:end`)
    },
  }),
)

// The close handshake times out (the peer never answers): what happens to TCP on Deno.
deno.get(
  '/timeout',
  upgrade(
    {
      async serve(conn, c) {
        await conn.close(4000, 'no answer expected')
        await readToEnd(conn, c.req.query('id') ?? '')
      },
    },
    { closeHandshakeTimeout: 300 },
  ),
)

// Headers from upgradeHeaders and from middleware. (The core refuses the handshake's own
// headers in upgradeHeaders, on every runtime: the conformance suite checks that.)
const headersController: Controller & HeaderUpgrader = {
  upgradeHeaders: () => [
    ['Set-Cookie', 'a=1; Path=/'],
    ['Set-Cookie', 'b=2; Path=/'],
    ['X-Handshake', 'yes'],
  ],
  serve: (conn, c) => readToEnd(conn, c.req.query('id') ?? ''),
}
deno.use('/headers', async (c, next) => {
  await next()
  c.res.headers.set('X-After-Next', 'middleware')
})
deno.get('/headers', upgrade(headersController))

// `serve` reads c.req after the upgrade, which Deno has released by then.
deno.get(
  '/request',
  upgrade({
    async serve(conn, c) {
      await conn.send(
        JSON.stringify({
          probe: c.req.header('x-probe') ?? null,
          url: c.req.url,
          query: c.req.query('q') ?? null,
          headers: Object.keys(c.req.header()).length,
        }),
      )
      await readToEnd(conn, c.req.query('id') ?? '')
    },
  }),
)

// Sends `count` messages of `size` bytes as fast as `send` allows, then reports bufferedAmount.
deno.get(
  '/flood',
  upgrade(
    {
      async serve(conn, c) {
        const id = c.req.query('id') ?? ''
        const chunk = new Uint8Array(Number(c.req.query('size') ?? 65536)).fill(0x61)
        const count = Number(c.req.query('count') ?? 64)
        let peak = 0
        const started = Date.now()
        try {
          for (let i = 0; i < count; i++) {
            await conn.send(chunk)
            peak = Math.max(peak, conn.bufferedAmount)
          }
          emit({ report: id, sent: count, peak, ms: Date.now() - started })
        } catch (err) {
          emit({ report: id, error: String(err), peak })
        }
        await readToEnd(conn, `${id}:end`)
      },
    },
    { sendHighWaterMark: 64 * 1024 },
  ),
)

// Deno's idleTimeout: on the server of its own that has it at 1 s.
deno.get('/idle', upgrade({ serve: (conn, c) => readToEnd(conn, c.req.query('id') ?? '') }))

// An HTTP response that never ends: a chunk every 50 ms until the client leaves. It would hold
// Deno's graceful server.shutdown() forever (issue 18 #22).
deno.get('/stream', () => {
  let timer: ReturnType<typeof setInterval> | undefined
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode('first\n'))
      timer = setInterval(() => controller.enqueue(new TextEncoder().encode('more\n')), 50)
    },
    cancel() {
      clearInterval(timer)
    },
  })
  return new Response(body, { headers: { 'content-type': 'text/plain' } })
})

const app = createConformanceApp()
app.route('/deno', deno)

// `default-host`: serve() with no hostname, printing where it listens (issue 18 #29); the test
// runs it with the network allowed on 127.0.0.1 only.
const mode = (globalThis as unknown as { Deno: { args: string[] } }).Deno.args[0]
const listen = { port: 0, hostname: '127.0.0.1', onListen() {} }
const sibling = await serve(app, listen)
const idle = await serve(app, { ...listen, idleTimeout: 1 })
const server = mode === 'default-host' ? await serve(app, { port: 0 }) : await serve(app, listen)
emit({ listening: server.address.port, sibling: sibling.address.port, idle: idle.address.port })

// The suite's commands, one JSON line each on stdin: the graceful shutdown, and reports read
// once the server no longer listens.
const stdin = (
  globalThis as unknown as { Deno: { stdin: { readable: AsyncIterable<Uint8Array> } } }
).Deno.stdin.readable
const decoder = new TextDecoder()
let pending = ''
for await (const chunk of stdin) {
  const parts = (pending + decoder.decode(chunk, { stream: true })).split('\n')
  pending = parts.pop() ?? ''
  for (const line of parts) {
    void answerControl(line, (options) => server.shutdown(options)).then(
      (answer) => answer && console.log(answer),
    )
  }
}
