/**
 * The Bun entry the tests start as a child process: the conformance app on 127.0.0.1, on a
 * port the OS picks (with the Bun-only routes of `bun-app.ts` under `/bun`), printed as `PORT <n>`
 * on stdout. In the `entry` and `serve` modes a second server of the same form serves the same
 * app, printed first as `SIBLING <n>`: a second hub. The first argument picks the entry:
 *
 * - `entry` (default): the documented entry, `Bun.serve({ fetch: app.fetch, websocket })`;
 * - `serve`: the `serve(app)` helper; SIGTERM shuts it down gracefully and prints `SHUTDOWN`;
 * - `serve-default`: `serve(app, { port: 0 })`, with its default hostname and listening line;
 *
 * In the `entry` and `serve` modes, the suite's commands come on stdin (`@handshake/conformance`'s
 * control): the graceful shutdown (`shutdown(server, options)`, `server.shutdown(options)`) and
 * reading reports once the server no longer listens. The other modes:
 * - `no-websocket`: the common mistake, `Bun.serve` with no `websocket` handler;
 * - `lost-server`: a `fetch` that drops Bun's second argument, the server;
 * - `foreign-websocket`: a `websocket` handler object that is not Handshake's.
 */
import { createConformanceApp } from '@handshake/conformance/app'
import { answerControl } from '@handshake/conformance/control'
import {
  type HandshakeServer,
  type ShutdownOptions,
  serve,
  shutdown,
  websocket,
} from '../src/index.js'
import { createBunTestApp } from './bun-app.js'

const app = createConformanceApp()
app.route('/bun', createBunTestApp())
const mode = process.argv[2] ?? 'entry'
const listen = { hostname: '127.0.0.1', port: 0 }

async function start(): Promise<{ port: number | undefined }> {
  switch (mode) {
    case 'entry': {
      const sibling = Bun.serve({ ...listen, fetch: app.fetch, websocket })
      console.log(`SIBLING ${sibling.port}`)
      return Bun.serve({ ...listen, fetch: app.fetch, websocket })
    }
    case 'serve': {
      const quiet = { ...listen, onListen() {}, websocket: { idleTimeout: 30 } }
      const sibling = await serve(app, quiet)
      console.log(`SIBLING ${sibling.address.port}`)
      const server = await serve(app, quiet)
      process.once('SIGTERM', async () => {
        await server.shutdown({ timeout: 5000 })
        console.log('SHUTDOWN')
        process.exit(0)
      })
      served = server
      return server.address
    }
    case 'serve-default':
      // serve() with no hostname: where it listens and what it prints (issue 18 #29).
      return (await serve(app, { port: 0 })).address
    case 'no-websocket':
      return Bun.serve({ ...listen, fetch: app.fetch })
    case 'lost-server':
      return Bun.serve({ ...listen, fetch: (request) => app.fetch(request), websocket })
    case 'foreign-websocket':
      return Bun.serve({ ...listen, fetch: app.fetch, websocket: { message() {} } })
    default:
      throw new Error(`Unknown mode: ${mode}`)
  }
}

let served: HandshakeServer | undefined
const server = await start()
console.log(`PORT ${server.port}`)

if (mode === 'entry' || mode === 'serve') {
  const stop = (options: ShutdownOptions) =>
    served ? served.shutdown(options) : shutdown(server as Parameters<typeof shutdown>[0], options)
  for await (const line of console) {
    void answerControl(line, stop).then((answer) => answer && console.log(answer))
  }
}
