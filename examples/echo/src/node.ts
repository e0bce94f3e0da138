// Node: `pnpm dev`. The Node server comes with WebSockets wired in.
import { serve } from '@handshake/node'
import { app } from './app.ts'

serve({ fetch: app.fetch, hostname: '127.0.0.1', port: Number(process.env.PORT ?? 3000) }, (info) =>
  console.log(`Echo running at ws://127.0.0.1:${info.port}/ws`),
)
