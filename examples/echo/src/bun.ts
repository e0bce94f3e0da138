// Bun: `pnpm dev:bun`. Bun serves the default export; `websocket` is Handshake's handler.
import { websocket } from '@handshake/bun'
import { app } from './app.ts'

const port = Number(process.env.PORT ?? 3000)
console.log(`Echo running at ws://127.0.0.1:${port}/ws`)

export default { fetch: app.fetch, websocket, hostname: '127.0.0.1', port }
