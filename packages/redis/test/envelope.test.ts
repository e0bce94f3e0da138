/**
 * The envelope alone: every message survives the round trip through UTF-8, the way both clients
 * carry it, and an instance tells its own messages and foreign ones apart.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { decode, encode, newInstanceId } from '../src/envelope.js'

const utf8 = new TextEncoder()
const fromUtf8 = new TextDecoder()
/** What Redis and the clients do to a message: UTF-8 on the way in, UTF-8 on the way out. */
const throughRedis = (message: string) => fromUtf8.decode(utf8.encode(message))

describe('the envelope', () => {
  const sender = newInstanceId()
  const receiver = newInstanceId()

  it('carries any bytes exactly, views included', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 20_000 }), fc.nat(16), (bytes, offset) => {
        const view = bytes.subarray(Math.min(offset, bytes.length))
        const decoded = decode(receiver, throughRedis(encode(sender, view)))
        expect(decoded).toEqual({ kind: 'message', data: new Uint8Array(view) })
      }),
    )
  })

  it('carries any well-formed text as text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (text) => {
        expect(decode(receiver, throughRedis(encode(sender, text)))).toEqual({
          kind: 'message',
          data: text,
        })
      }),
    )
  })

  it("tells the instance's own messages apart", () => {
    expect(decode(sender, encode(sender, 'mine'))).toEqual({ kind: 'echo' })
    expect(decode(sender, encode(sender, new Uint8Array([1, 2])))).toEqual({ kind: 'echo' })
  })

  it('ignores what it did not write', () => {
    for (const foreign of ['', 'hello', 'T123', `X${sender}payload`, `B${sender}\u0100`]) {
      expect(decode(receiver, foreign)).toEqual({ kind: 'foreign' })
    }
  })

  it('makes 16 hex digits of random ids', () => {
    const ids = new Set(Array.from({ length: 1000 }, newInstanceId))
    expect(ids.size).toBe(1000)
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{16}$/)
  })
})
