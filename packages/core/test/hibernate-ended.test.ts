import { describe, expect, it } from 'vitest'
import type { Conn, EventController } from '../src/index.js'
import { hibernatable } from '../src/testing.js'

// A hibernatable socket cannot be terminated (workerd has no terminate()): when the core gives
// up on one (a shutdown's deadline, a peer that never answered the close frame), the socket stays
// open at the platform, with what it stored. A later wake must not bring that connection back.
describe('a hibernatable connection the core gave up on', () => {
  it('is not woken again: no second close, no message to a closed connection', async () => {
    const seen: string[] = []
    const room = hibernatable(
      (): EventController => ({
        open(conn: Conn) {
          seen.push('open')
          return conn.subscribe('room')
        },
        message(_conn, message) {
          seen.push(`message ${String(message.data)}`)
        },
        close(_conn, error) {
          seen.push(`close ${error.code}`)
        },
      }),
    )
    const peer = await room.connect({ answerClose: false })
    await room.connections.shutdown({ timeout: 50 })
    expect(seen).toEqual(['open', 'close 1006'])
    expect(room.connections.size).toBe(0)
    room.evict()
    expect(room.connections.size).toBe(0)
    expect(room.topics.subscribers('room')).toBe(0)
    peer.send('late')
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(seen).toEqual(['open', 'close 1006'])
  })
})
