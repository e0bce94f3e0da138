/**
 * The chat on every runtime: each entry started by its package script (the example's own tsx,
 * Bun, Deno or wrangler; `--watch` dropped), then `ws` clients check the protocol the README
 * documents: join notices, a message to the whole room, a leave notice, 1007 for bad JSON, and
 * the page at `/`. One runtime at a time, so the file runs one server.
 */
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
} from '../../echo/test/spawn.ts'

const exampleDir = fileURLToPath(new URL('..', import.meta.url))

const RUNTIMES: Runtime[] = [
  { name: 'node', script: 'start' },
  { name: 'bun', script: 'dev:bun' },
  { name: 'deno', script: 'dev:deno' },
  { name: 'workers', script: 'dev:workers' },
]

describe.each(RUNTIMES)('chat on $name', ({ name: runtime, script }) => {
  let server: Server | undefined
  const roomUrl = (room: string, name: string) =>
    `${server!.wsUrl}/ws/${room}-${runtime}?name=${encodeURIComponent(name)}`

  beforeAll(async () => {
    server = await startScript(exampleDir, script)
  }, START_TIMEOUT_MS + STOP_TIMEOUT_MS)

  afterAll(async () => {
    await server?.stop()
  }, STOP_TIMEOUT_MS)

  it('serves the page at /', async () => {
    const response = await fetch(`${server!.httpUrl}/`)
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toMatch(/^text\/html/)
    expect(await response.text()).toContain('<title>Handshake chat</title>')
  })

  it('joins two members to one room, broadcasts a message, and tells who left', async () => {
    const alice = await connect(roomUrl('lobby', 'alice'))
    expect(await alice.nextJson()).toEqual({ type: 'join', name: 'alice' })

    const bob = await connect(roomUrl('lobby', 'bob'))
    const bobJoined = { type: 'join', name: 'bob' }
    expect(await alice.nextJson()).toEqual(bobJoined)
    expect(await bob.nextJson()).toEqual(bobJoined)
    // Alice answers the roll call, so that bob learns she is there.
    alice.ws.send(JSON.stringify({ here: true }))
    expect(await bob.nextJson()).toEqual({ type: 'here', name: 'alice' })
    expect(await alice.nextJson()).toEqual({ type: 'here', name: 'alice' })

    alice.ws.send(JSON.stringify({ text: 'hello, bob' }))
    // The sender gets its own message too.
    const hello = { type: 'message', name: 'alice', text: 'hello, bob' }
    expect(await bob.nextJson()).toEqual(hello)
    expect(await alice.nextJson()).toEqual(hello)

    bob.ws.close(1000, 'bye')
    expect((await within(bob.closed, 10_000, "bob's close")).code).toBe(1000)
    expect(await alice.nextJson()).toEqual({ type: 'leave', name: 'bob' })

    alice.ws.close(1000)
    expect((await within(alice.closed, 10_000, "alice's close")).code).toBe(1000)
  })

  it('closes a connection that sends bad JSON with 1007 and the documented reason', async () => {
    const carol = await connect(roomUrl('strict', 'carol'))
    expect(await carol.nextJson()).toEqual({ type: 'join', name: 'carol' })
    carol.ws.send('{"text": unquoted}')
    expect(await within(carol.closed, 10_000, "carol's close")).toEqual({
      code: 1007,
      reason: 'Expected JSON {"text": "..."} with 1 to 1000 characters',
    })
  })
})
