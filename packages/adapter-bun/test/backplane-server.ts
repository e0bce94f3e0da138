/**
 * An instance of the two-instance scenarios, in its own Bun process: the conformance app on a
 * Redis backplane, with `serve(app)` (whose hub is at hand before the first request), on
 * 127.0.0.1 and a port the OS picks, printed as `{"listening": port}`. Arguments: the Redis URL,
 * the client (`ioredis` or `node-redis`), and `history` or `presence` for those scenarios' app
 * (see `runBackplaneInstance`).
 */
import { runBackplaneInstance } from '@handshake/conformance/backplane-setup'
import { serve } from '../src/index.js'

await runBackplaneInstance(
  (app) => serve(app, { hostname: '127.0.0.1', port: 0, onListen() {} }),
  process.argv.slice(2),
)
