/**
 * The test app on Bun or Deno, in a child process: `bun test/server.ts bun` or
 * `deno run --allow-net=127.0.0.1 test/server.ts deno`. It prints `{"listening":PORT}` once it
 * serves on 127.0.0.1, on a port the OS picked.
 * @module
 */
import type { Topics } from '@handshake/core'
import { createChannelsApp, useFeedHistory } from './app.ts'

const runtime = (globalThis as { Deno?: unknown }).Deno ? 'deno' : 'bun'
const adapter = `@handshake/${runtime}`
const { serve } = (await import(adapter)) as {
  serve(
    app: unknown,
    options: { port: number; hostname: string; onListen(): void },
  ): Promise<{ address: { port: number }; topics: Topics }>
}
const server = await serve(createChannelsApp(), { port: 0, hostname: '127.0.0.1', onListen() {} })
useFeedHistory(server.topics)
console.log(JSON.stringify({ listening: server.address.port }))
