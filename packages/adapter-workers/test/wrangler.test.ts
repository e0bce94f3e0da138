/**
 * The same Worker under `wrangler dev`, offline: wrangler's own bundling keeps the adapter's
 * import (the package has side effects) and the entry is a plain `export default app`.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import { handshakeHeaders, Opcode, RawPeer, rawRequest } from '@handshake/conformance'
import { afterAll, beforeAll, expect, it } from 'vitest'

const wranglerBin = createRequire(import.meta.url).resolve('wrangler/bin/wrangler.js')
const config = fileURLToPath(new URL('./wrangler.jsonc', import.meta.url))

/** A port that was free a moment ago: wrangler takes a fixed `--port`. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

let wrangler: ChildProcess | undefined
let url = ''
let output = ''

beforeAll(async () => {
  const port = await freePort()
  url = `http://127.0.0.1:${port}`
  // Its own process group, so that stopping it stops workerd with it.
  wrangler = spawn(
    process.execPath,
    [wranglerBin, 'dev', '-c', config, '--ip', '127.0.0.1', '--port', String(port)],
    {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        WRANGLER_SEND_METRICS: 'false',
        WRANGLER_SEND_ERROR_REPORTS: 'false',
        CLOUDFLARE_CF_FETCH_ENABLED: 'false',
        CI: 'true',
      },
    },
  )
  const started = wrangler
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`wrangler dev did not start:\n${output}`)),
      50_000,
    )
    const onData = (chunk: Buffer) => {
      output += chunk.toString()
      if (output.includes('Ready on')) {
        clearTimeout(timer)
        resolve()
      }
    }
    started.stdout?.on('data', onData)
    started.stderr?.on('data', onData)
    started.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`wrangler dev exited with ${code}:\n${output}`))
    })
  })
})

afterAll(async () => {
  const started = wrangler
  if (!started?.pid || started.exitCode !== null) return
  const exited = new Promise((resolve) => started.once('exit', resolve))
  process.kill(-started.pid, 'SIGTERM')
  const stopped = await Promise.race([
    exited.then(() => true),
    new Promise((r) => setTimeout(() => r(false), 5000)),
  ])
  if (!stopped) process.kill(-started.pid, 'SIGKILL')
})

it('serves the upgrade, the echo and the close handshake under wrangler dev', async () => {
  const peer = await RawPeer.connect(url, '/upgrade-headers?id=wrangler', { answerClose: false })
  expect(peer.headers.get('x-conformance')).toBe('upgrade-headers')
  peer.send('over wrangler')
  expect(await peer.read()).toEqual({ type: 'text', data: 'over wrangler' })
  peer.close()
  await peer.closeFrame
  expect(peer.frames.find((frame) => frame.opcode === Opcode.Close)?.payload.byteLength).toBe(0)
  const report = await fetch(`${url}/report/wrangler`)
  expect(await report.json()).toMatchObject({ messagesRead: 1 })
  peer.vanish()
  expect(output).not.toContain('code had hung')
}, 30_000)

it('answers a close code with the same code', async () => {
  const peer = await RawPeer.connect(url, '/echo?id=wrangler-close', { answerClose: false })
  peer.close(4001, 'bye')
  expect(await peer.closeFrame).toMatchObject({ code: 4001, reason: 'bye' })
  await peer.ended
})

// wrangler dev puts its own proxy in front of workerd, and the proxy does its own WebSocket
// handshake with the client: the Worker's rejections of a bad handshake never reach the client
// there. The conformance suite checks them against workerd's own socket (Miniflare).
it("difference: wrangler dev's proxy answers a bad version itself, with a plain-text 400", async () => {
  const answer = await rawRequest(url, '/echo?id=wrangler-version', {
    headers: { ...handshakeHeaders(), 'Sec-WebSocket-Version': '8' },
    readToEnd: true,
  })
  // Not the Worker's 426 with {"error":"Upgrade Required"}.
  expect(answer.status).toBe(400)
  expect(answer.headers.get('content-type') ?? '').not.toMatch(/json/)
  expect(answer.body).not.toContain('Upgrade Required')
})

it("difference: wrangler dev's proxy re-keys a bad Sec-WebSocket-Key and answers 101", async () => {
  const answer = await rawRequest(url, '/echo?id=wrangler-key', {
    headers: { ...handshakeHeaders(), 'Sec-WebSocket-Key': 'not-a-valid-key' },
  })
  // Not the Worker's 400: the proxy sent workerd a valid key of its own.
  expect(answer.status).toBe(101)
})
