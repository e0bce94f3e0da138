// Cloudflare Workers: `pnpm dev:workers` (wrangler dev), `wrangler deploy` to publish.
import '@handshake/workers'
import { app } from './app.ts'

export default app
