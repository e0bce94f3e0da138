/**
 * The chat on Bun: `pnpm dev:bun`. It listens on 127.0.0.1 and, on Ctrl+C or SIGTERM, closes
 * every connection with 1001 Going Away before it exits.
 * @module
 */
import { serve } from '@handshake/bun'
import { app, MAX_MESSAGE_BYTES, useRoomHistory } from './app.ts'

const server = await serve(app, {
  hostname: '127.0.0.1',
  port: Number(process.env.PORT ?? 3000),
  // Bun refuses bigger messages itself (1009) before buffering them whole.
  websocket: { maxMessageSize: MAX_MESSAGE_BYTES },
  onListen: ({ port }) => console.log(`Chat running at http://127.0.0.1:${port}/`),
})
useRoomHistory(server.topics)

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.log(`${signal}: closing every connection with 1001`)
    server.shutdown().then(() => process.exit(0))
  })
}
