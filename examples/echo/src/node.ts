// Node: `pnpm dev`. The Node server comes with WebSockets wired in.
import { serve } from '@handshake/node'
import { app } from './app.ts'

const server = await serve(app, { hostname: '127.0.0.1', port: Number(process.env.PORT ?? 3000) })
console.log(`Echo running at ws://127.0.0.1:${server.address.port}/ws`)
