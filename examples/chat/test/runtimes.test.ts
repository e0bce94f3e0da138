/**
 * The chat on every runtime: each entry started by its package script (the example's own tsx,
 * Bun, Deno or wrangler; `--watch` dropped), then `@handshake/client` on Node (with `ws`) checks
 * what the README documents: the page and its script, the member list (presence) with its joins
 * and leaves, a message to the room, the `rooms` request, an error reply for a refused message,
 * and 1007 for text that is not JSON. One runtime at a time, so the file runs one server.
 */
import { fileURLToPath } from 'node:url'
import { type ChannelError, type Client, createClient } from '@handshake/client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import {
  type Runtime,
  type Server,
  START_TIMEOUT_MS,
  STOP_TIMEOUT_MS,
  startScript,
  within,
} from '../../echo/test/spawn.ts'
import type { chat } from '../src/app.ts'

const exampleDir = fileURLToPath(new URL('..', import.meta.url))

const RUNTIMES: Runtime[] = [
  { name: 'node', script: 'start' },
  { name: 'bun', script: 'dev:bun' },
  { name: 'deno', script: 'dev:deno' },
  { name: 'workers', script: 'dev:workers' },
]

/** Resolves once `check` holds, polling; fails with `what` after 10 s. */
async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

describe.each(RUNTIMES)('chat on $name', ({ name: runtime, script }) => {
  let server: Server | undefined
  const clients: Client<typeof chat>[] = []

  /**
   * A member in `room`: its client, what the room sent it, and its member list (names, from
   * the room's presence) with the joins and leaves after the first list.
   */
  async function join(name: string, room: string) {
    const client = createClient<typeof chat>(`${server!.wsUrl}/ws?name=${name}`, {
      WebSocket: WebSocket as never,
    })
    clients.push(client)
    const messages: unknown[] = []
    const notices: string[] = []
    let lists = 0
    const subscription = client.subscribe(`rooms/${room}`, {
      message: (data) => messages.push(data),
      presence: (_, { joins, leaves }) => {
        if (lists++ === 0) return
        for (const m of leaves) notices.push(`-${m.meta.name}`)
        for (const m of joins) notices.push(`+${m.meta.name}`)
      },
    })
    await until(() => lists === 1, `${name}'s member list`)
    const names = () => [...subscription.members.values()].map((m) => m.name).sort()
    return { client, messages, notices, names }
  }

  beforeAll(async () => {
    server = await startScript(exampleDir, script)
  }, START_TIMEOUT_MS + STOP_TIMEOUT_MS)

  afterAll(async () => {
    for (const client of clients) client.close()
    await server?.stop()
  }, STOP_TIMEOUT_MS)

  it('serves the page at / and its script at /chat.js', async () => {
    const response = await fetch(`${server!.httpUrl}/`)
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toMatch(/^text\/html/)
    expect(await response.text()).toContain('<title>Handshake chat</title>')
    const script = await fetch(`${server!.httpUrl}/chat.js`)
    expect(script.headers.get('content-type')).toMatch(/^text\/javascript/)
    expect(await script.text()).toContain('handshake.v1')
  })

  it('joins two members to one room, delivers a message, lists the rooms, and tells who left', async () => {
    const room = `lobby-${runtime}`
    const alice = await join('alice', room)
    expect(alice.names()).toEqual(['alice'])
    const bob = await join('bob', room)
    // Bob's first list has alice: nobody has to answer his join.
    expect(bob.names()).toEqual(['alice', 'bob'])
    await until(() => alice.notices.length === 1, "bob's join")
    expect(alice.notices).toEqual(['+bob'])

    await bob.client.publish(`rooms/${room}`, { text: '  hello, alice  ' }, { ack: true })
    await until(() => alice.messages.length === 1, "bob's message")
    expect(alice.messages).toEqual([{ name: 'bob', text: 'hello, alice' }])
    // A publisher does not get its own message back.
    expect(bob.messages).toEqual([])

    expect(await alice.client.request('rooms', {})).toContainEqual({ room, members: 2 })

    bob.client.close()
    await until(() => alice.notices.length === 2, "bob's leave")
    expect(alice.notices[1]).toEqual('-bob')
    expect(alice.names()).toEqual(['alice'])
  })

  it('answers a refused message with an error reply, and closes text that is not JSON with 1007', async () => {
    const { client } = await join('carol', `strict-${runtime}`)
    const refused = await client
      .publish(`rooms/strict-${runtime}`, { text: '   ' }, { ack: true })
      .catch((err: ChannelError) => err)
    expect(refused).toMatchObject({ code: 'invalid' })
    const badRoom = await client
      .publish('rooms/no spaces', { text: 'hi' }, { ack: true })
      .catch((err: ChannelError) => err)
    expect(badRoom).toMatchObject({ code: 'invalid', message: expect.stringMatching(/room name/) })
    expect(client.state.status).toBe('open')

    const ws = new WebSocket(`${server!.wsUrl}/ws?name=mallory`, 'handshake.v1')
    const closed = new Promise<number>((resolve) =>
      ws.once('close', (code: number) => resolve(code)),
    )
    await new Promise((resolve) => ws.once('open', resolve))
    ws.send('{"type": unquoted}')
    expect(await within(closed, 10_000, "mallory's close")).toBe(1007)
  })
})
