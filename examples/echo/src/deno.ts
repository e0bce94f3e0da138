// Deno: `pnpm dev:deno`. Importing the adapter installs it; the rest is plain Deno.serve.
import '@handshake/deno'
import { app } from './app.ts'

declare const Deno: {
  env: { get(name: string): string | undefined }
  serve(
    options: { hostname: string; port: number; onListen(addr: { port: number }): void },
    handler: (request: Request, info: unknown) => Response | Promise<Response>,
  ): unknown
}

Deno.serve(
  {
    hostname: '127.0.0.1',
    port: Number(Deno.env.get('PORT') ?? 3000),
    onListen: ({ port }) => console.log(`Echo running at ws://127.0.0.1:${port}/ws`),
  },
  app.fetch,
)
