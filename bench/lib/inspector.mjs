/**
 * A minimal Chrome DevTools Protocol client over the inspector WebSocket of a process started
 * with `--inspect=127.0.0.1:0` (Deno, Node): enough to collect garbage and stream a heap
 * snapshot to a file. Snapshots taken in one session keep their object ids, so two of them can
 * be compared object by object.
 */
import { createWriteStream } from 'node:fs'
import WebSocket from 'ws'

/** The inspector URL a runtime prints on stderr ("Debugger listening on ws://..."). */
export function inspectorUrl(stderr) {
  return /(ws:\/\/127\.0\.0\.1:\d+\/\S+)/.exec(stderr)?.[1]
}

/** Connects to an inspector; resolves with `{ call, heapSnapshot, close }`. */
export async function connectInspector(url) {
  const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 2 ** 31 - 1 })
  await new Promise((resolve, reject) => {
    ws.once('open', resolve)
    ws.once('error', reject)
  })
  let nextId = 1
  const pending = new Map()
  let onChunk
  ws.on('message', (raw) => {
    const msg = JSON.parse(raw.toString('utf8'))
    if (msg.method === 'HeapProfiler.addHeapSnapshotChunk') onChunk?.(msg.params.chunk)
    else if (msg.id && pending.has(msg.id)) {
      const { resolve, reject } = pending.get(msg.id)
      pending.delete(msg.id)
      if (msg.error) reject(new Error(`${msg.error.message} (${msg.error.code})`))
      else resolve(msg.result)
    }
  })
  const call = (method, params = {}) =>
    new Promise((resolve, reject) => {
      const id = nextId++
      pending.set(id, { resolve, reject })
      ws.send(JSON.stringify({ id, method, params }))
    })
  await call('HeapProfiler.enable')
  return {
    call,
    /** Collects garbage, then writes a heap snapshot to `path`. */
    async heapSnapshot(path) {
      await call('HeapProfiler.collectGarbage')
      const out = createWriteStream(path)
      onChunk = (chunk) => out.write(chunk)
      await call('HeapProfiler.takeHeapSnapshot', { reportProgress: false })
      onChunk = undefined
      await new Promise((resolve, reject) => out.end((err) => (err ? reject(err) : resolve())))
    },
    close() {
      ws.close()
    },
  }
}
