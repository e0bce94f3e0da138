/**
 * What `console.log(conn)` shows: the connection's public state. Node's `util.inspect` is what
 * `console.log` uses; Bun and Deno look the same registered symbol up (their tests check theirs).
 */
import { inspect } from 'node:util'
import { expect, it } from 'vitest'
import type { Conn } from '../src/index.js'
import { connect } from '../src/testing.js'

it('a Conn inspects as its public state, not its internals (failed before: the socket, the hub and every symbol-keyed field were printed)', async () => {
  let shown = ''
  let nested = ''
  const peer = await connect(
    {
      async serve(conn: Conn) {
        conn.data = { user: 'ada' }
        await conn.subscribe('room')
        shown = inspect(conn)
        nested = inspect({ conn }, { depth: 0 })
        await conn.read()
      },
    },
    '/chat',
    { upgrade: { subprotocols: ['v1'] }, protocols: ['v1'] },
  )
  await expect.poll(() => shown).not.toBe('')
  expect(shown).toMatch(/^Conn \{/)
  expect(shown).toContain("state: 'open'")
  expect(shown).toContain("protocol: 'v1'")
  expect(shown).toContain("url: 'http://localhost/chat'")
  expect(shown).toContain("Set(1) { 'room' }")
  expect(shown).toContain("data: { user: 'ada' }")
  expect(shown).toContain('droppedMessages: 0')
  expect(shown).not.toMatch(/Symbol\(|Connections|Topics|socket/)
  expect(nested).toBe('{ conn: [Conn] }')
  peer.close()
})
