/**
 * The echo example on every runtime: each entry started by its package script (the example's own
 * tsx, Bun, Deno or wrangler), then a `ws` client checks text and binary come back exactly and the
 * close handshake completes with 1000. One runtime at a time, so the file runs one server.
 */
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  connect,
  type Runtime,
  type Server,
  START_TIMEOUT_MS,
  STOP_TIMEOUT_MS,
  startScript,
  within,
} from './spawn.ts'

const exampleDir = fileURLToPath(new URL('..', import.meta.url))

const RUNTIMES: Runtime[] = [
  { name: 'node', script: 'dev' },
  { name: 'bun', script: 'dev:bun' },
  { name: 'deno', script: 'dev:deno' },
  { name: 'workers', script: 'dev:workers' },
]

describe.each(RUNTIMES)('echo on $name', ({ script }) => {
  let server: Server | undefined

  beforeAll(async () => {
    server = await startScript(exampleDir, script)
  }, START_TIMEOUT_MS + STOP_TIMEOUT_MS)

  afterAll(async () => {
    await server?.stop()
  }, STOP_TIMEOUT_MS)

  it('serves its page', async () => {
    const response = await fetch(`${server!.httpUrl}/`)
    expect(response.status).toBe(200)
    expect(await response.text()).toContain('/ws')
  })

  it('echoes text and binary exactly, then completes the close handshake with 1000', async () => {
    const client = await connect(`${server!.wsUrl}/ws`)
    const text = 'hello, wörld ✓ 🤝'
    client.ws.send(text)
    expect(await client.next()).toEqual({ binary: false, data: text })

    // Every byte value, and an odd length, so a shared or padded buffer would show.
    const bytes = Buffer.concat([
      Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
      randomBytes(77),
    ])
    client.ws.send(bytes)
    const echoed = await client.next()
    expect(echoed.binary).toBe(true)
    expect(Buffer.compare(echoed.data as Buffer, bytes)).toBe(0)

    client.ws.close(1000, 'done')
    // `ws` reports the code of the server's close frame: seeing 1000 means the server answered.
    const { code } = await within(client.closed, 10_000, 'the server close')
    expect(code).toBe(1000)
  })
})
