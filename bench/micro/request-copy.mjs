/**
 * What keeping the upgrade request costs per connection, in CPU time, on the runtime that runs
 * this file: a whole `Request` made at once (what the Node and Deno adapters did) against what
 * the request views of the adapters do at the upgrade (read url, method and the header list,
 * and make a `Headers` only when asked).
 *
 *   node bench/micro/request-copy.mjs
 *   deno run --allow-read --allow-env bench/micro/request-copy.mjs
 *   bun bench/micro/request-copy.mjs
 *
 * CPU time from process.cpuUsage(), the best of 7 runs of 20,000 (the machine is shared: the
 * least disturbed run is the closest to the code's own cost).
 */
import process from 'node:process'

const N = 20_000

function bench(name, fn) {
  for (let i = 0; i < 3000; i++) fn()
  let best = Number.POSITIVE_INFINITY
  for (let round = 0; round < 7; round++) {
    const start = process.cpuUsage()
    for (let i = 0; i < N; i++) fn()
    const used = process.cpuUsage(start)
    best = Math.min(best, (used.user + used.system) / N)
  }
  console.log(`${name.padEnd(62)} ${best.toFixed(2)} µs`)
}

// A browser's upgrade request, as Node hands its header list.
const rawHeaders = [
  'Host',
  '127.0.0.1:8080',
  'Connection',
  'Upgrade',
  'Upgrade',
  'websocket',
  'Sec-WebSocket-Key',
  'dGhlIHNhbXBsZSBub25jZQ==',
  'Sec-WebSocket-Version',
  '13',
  'Origin',
  'http://127.0.0.1:8080',
  'User-Agent',
  'Mozilla/5.0 (X11; Linux x86_64)',
  'Cookie',
  'session=abc',
]
const target = '/chat?room=1'

/** What the handshake reads: seven header lookups. */
function handshakeReads(headers) {
  headers.get('upgrade')
  headers.get('connection')
  headers.get('sec-websocket-version')
  headers.get('sec-websocket-key')
  headers.get('origin')
  headers.get('host')
  headers.get('sec-websocket-protocol')
}

function headersOf(list) {
  const headers = new Headers()
  for (let i = 0; i + 1 < list.length; i += 2) headers.append(list[i], list[i + 1])
  return headers
}

const runtime = globalThis.Deno ? 'Deno' : globalThis.Bun ? 'Bun' : 'Node'
console.log(`${runtime}: CPU per upgrade request`)

// Node: the adapter turns the IncomingMessage into a web Request.
bench('eager: URL, Headers, Request with its own AbortSignal', () => {
  const url = new URL(`http://127.0.0.1:8080${target}`)
  const headers = headersOf(rawHeaders)
  const request = new Request(url, {
    method: 'GET',
    headers,
    signal: new AbortController().signal,
  })
  handshakeReads(request.headers)
})
bench('view: the URL string and a Headers when the handshake reads it', () => {
  const url = new URL(`http://127.0.0.1:8080${target}`).href
  const headers = headersOf(rawHeaders)
  handshakeReads(headers)
  return url
})

// Deno: the adapter keeps a copy of the request that Deno closes at the upgrade.
const original = new Request(`http://127.0.0.1:8080${target}`, { headers: headersOf(rawHeaders) })
bench('eager copy: new Request(url, { method, headers: raw.headers })', () => {
  return new Request(original.url, { method: original.method, headers: original.headers })
})
bench('view: the header list read with forEach', () => {
  const list = []
  original.headers.forEach((value, name) => {
    list.push(name, value)
  })
  return { url: original.url, method: original.method, list }
})
