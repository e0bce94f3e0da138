/**
 * Preloaded into a Node server entry by `bench/heap.mjs` (`node --import`): on SIGUSR2 it writes
 * a heap snapshot (V8 collects garbage first) and prints `{"heapsnapshot": path}` on stdout.
 */
import { writeHeapSnapshot } from 'node:v8'

let count = 0
process.on('SIGUSR2', () => {
  globalThis.gc?.()
  const path = `${process.env.HEAP_SNAPSHOT_DIR ?? '.'}/${process.pid}-${++count}.heapsnapshot`
  writeHeapSnapshot(path)
  process.stdout.write(`${JSON.stringify({ heapsnapshot: path })}\n`)
})
