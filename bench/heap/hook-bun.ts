/**
 * Preloaded into a Bun server entry by `bench/heap.mjs` (`bun --preload`): on SIGUSR2 it runs a
 * full GC, writes a heap snapshot in V8's format, and prints `{"heapsnapshot": path}` on stdout.
 * It also prints the per-type object counts of `bun:jsc`'s heapStats() next to it.
 */
import { heapStats } from 'bun:jsc'

let count = 0
process.on('SIGUSR2', async () => {
  Bun.gc(true)
  const path = `${process.env.HEAP_SNAPSHOT_DIR ?? '.'}/${process.pid}-${++count}.heapsnapshot`
  await Bun.write(path, Bun.generateHeapSnapshot('v8', 'arraybuffer'))
  await Bun.write(`${path}.jsc-stats.json`, JSON.stringify(heapStats()))
  process.stdout.write(`${JSON.stringify({ heapsnapshot: path })}\n`)
})
