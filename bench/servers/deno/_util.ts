/** What every Deno entry shares: announcing its port, and its memory for `/stats`. */

/** Tells the bench runner which port the server listens on (one JSON line on stdout). */
export function announce(port: number): void {
  console.log(JSON.stringify({ port }))
}

/** The process's memory after a full GC (the runner passes `--v8-flags=--expose-gc`). */
export function stats(): string {
  ;(globalThis as { gc?: () => void }).gc?.()
  const { rss, heapUsed, external } = Deno.memoryUsage()
  return JSON.stringify({ rss, heap: heapUsed, external })
}

/** The options every entry passes to `Deno.serve`. */
export const listen = {
  hostname: '127.0.0.1',
  port: 0,
  onListen: ({ port }: { port: number }) => announce(port),
}
