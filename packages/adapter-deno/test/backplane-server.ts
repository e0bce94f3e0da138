/**
 * An instance of the two-instance scenarios, in its own Deno process: the conformance app on a
 * Redis backplane, through this package's `serve`, on 127.0.0.1 and a port the OS picks, printed
 * as `{"listening": port}`. Arguments: the Redis URL, the client (`ioredis` or `node-redis`), and
 * `history` or `presence` for those scenarios' app (see `runBackplaneInstance`).
 */
// Relative imports, as in server.ts: Deno runs the suite's TypeScript from its source.
import { runBackplaneInstance } from '../../conformance/src/backplane-setup.ts'
import { serve } from '../src/index.ts'

await runBackplaneInstance(
  (app) => serve(app, { port: 0, hostname: '127.0.0.1' }),
  (globalThis as unknown as { Deno: { args: string[] } }).Deno.args,
)
