/** What every Bun entry shares: announcing its port, and its memory for `/stats`. */

/** Tells the bench runner which port the server listens on (one JSON line on stdout). */
export function announce(port: number | undefined): void {
  // Exit through process.exit on SIGTERM, so that `--cpu-prof` writes its profile.
  process.on('SIGTERM', () => process.exit(0))
  process.stdout.write(`${JSON.stringify({ port })}\n`)
}

/** The process's memory after a full, synchronous GC. */
export function stats(): string {
  Bun.gc(true)
  const { rss, heapUsed, external } = process.memoryUsage()
  return JSON.stringify({ rss, heap: heapUsed, external })
}
