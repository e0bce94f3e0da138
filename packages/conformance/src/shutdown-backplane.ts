/**
 * A server whose backplane fails to close: its shutdown must run once, resolve, and log the
 * failure, on every runtime (`HandshakeServer.shutdown`). Each runtime's test runs it with its
 * own `serve`, in its own process for Bun and Deno, which print the report as JSON.
 * @module
 */
import type { HandshakeServer } from '@handshake/core/adapter'
import { Hono } from 'hono'

/** What the scenario saw. */
export interface BackplaneCloseReport {
  /** How the first `shutdown()` settled: `resolved`, or `rejected: <error>`. */
  readonly first: string
  /** How a second `shutdown()`, made after the first settled, settled. */
  readonly again: string
  /** How many times the backplane's `close()` was called. */
  readonly closes: number
  /** What was logged with `console.error` meanwhile. */
  readonly logged: readonly string[]
}

/** A runtime package's `serve`. */
export type ServeForTest = (
  app: Hono,
  options: { port: number; hostname: string; onListen(): void },
) => Promise<HandshakeServer>

/** Starts a server, gives its hub a backplane whose `close()` rejects, and shuts it down twice. */
export async function failingBackplaneShutdown(serve: ServeForTest): Promise<BackplaneCloseReport> {
  const app = new Hono().get('/', (c) => c.text('ok'))
  const server = await serve(app, { port: 0, hostname: '127.0.0.1', onListen() {} })
  let closes = 0
  await server.topics.useBackplane({
    start() {},
    async subscribe() {},
    async unsubscribe() {},
    publish() {},
    async close() {
      closes += 1
      throw new Error('the engine went away')
    },
  })
  const logged: string[] = []
  const error = console.error
  console.error = (...args: unknown[]) => void logged.push(args.map(String).join(' '))
  const outcome = (shutdown: Promise<void>) =>
    shutdown.then(
      () => 'resolved',
      (err: unknown) => `rejected: ${String(err)}`,
    )
  try {
    const first = await outcome(server.shutdown({ timeout: 1000 }))
    const again = await outcome(server.shutdown({ timeout: 1000 }))
    return { first, again, closes, logged }
  } finally {
    console.error = error
  }
}

/** What every runtime must report. */
export const expectedBackplaneCloseReport = {
  first: 'resolved',
  again: 'resolved',
  closes: 1,
} as const
