/**
 * The chat on Deno: `pnpm dev:deno`. It listens on 127.0.0.1 and, on Ctrl+C or SIGTERM, closes
 * every connection with 1001 Going Away before it exits.
 * @module
 */
import { serve } from '@handshake/deno'
import { app, useRoomHistory } from './app.ts'

// The example's tsconfig has Node's types, not Deno's: this is the little of `Deno` used here.
declare const Deno: {
  env: { get(name: string): string | undefined }
  addSignalListener(signal: 'SIGINT' | 'SIGTERM', handler: () => void): void
  exit(code: number): never
}

const server = await serve(app, {
  hostname: '127.0.0.1',
  port: Number(Deno.env.get('PORT') ?? 3000),
  onListen: ({ port }) => console.log(`Chat running at http://127.0.0.1:${port}/`),
})
useRoomHistory(server.topics)

let stopping = false
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  Deno.addSignalListener(signal, () => {
    // `deno run --watch` passes on the signal it gets as well: act on the first one only.
    if (stopping) return
    stopping = true
    console.log(`${signal}: closing every connection with 1001`)
    server.shutdown().then(() => Deno.exit(0))
  })
}
