/**
 * An instance of the two-instance scenarios, in its own Node process (`node --import tsx`): the
 * conformance app on a Redis backplane, on 127.0.0.1 and a port the OS picks, printed as
 * `{"listening": port}`. Arguments: the Redis URL, the client (`ioredis` or `node-redis`), and
 * `history` or `presence` for those scenarios' app (see `runBackplaneInstance`).
 */
import { runBackplaneInstance } from '@handshake/conformance/backplane-setup'
import { serve } from '../src/index.js'

await runBackplaneInstance(
  (app) => serve(app, { port: 0, hostname: '127.0.0.1', onListen() {} }),
  process.argv.slice(2),
)
