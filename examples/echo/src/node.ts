// Node: `pnpm dev`. The Node server comes with WebSockets wired in.
import { serve } from '@handshake/node'
import { app } from './app.ts'

await serve(app, {
  hostname: '127.0.0.1',
  port: Number(process.env.PORT ?? 3000),
  onListen: ({ port }) => console.log(`Echo running at ws://127.0.0.1:${port}/ws`),
})
