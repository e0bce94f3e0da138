/**
 * The chat on Node: `pnpm start` (or `PORT=8080 pnpm start`). It listens on 127.0.0.1 and, on
 * Ctrl+C or SIGTERM, closes every connection with 1001 Going Away before it exits.
 * @module
 */
import { serve } from '@handshake/node'
import { app } from './app.ts'

const server = serve(
  { fetch: app.fetch, hostname: '127.0.0.1', port: Number(process.env.PORT ?? 3000) },
  (info) => console.log(`Chat running at http://127.0.0.1:${info.port}/`),
)

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.log(`${signal}: closing every connection with 1001`)
    server.shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(err)
        process.exit(1)
      },
    )
  })
}
