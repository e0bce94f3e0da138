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
  const at = { sequence: 1, starts: true }
  const from = { publisher: sender, ...at }

  it('carries any bytes exactly, views included', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 20_000 }), fc.nat(16), (bytes, offset) => {
        const view = bytes.subarray(Math.min(offset, bytes.length))
        const decoded = decode(receiver, throughRedis(encode(sender, view, at)))
        expect(decoded).toEqual({ kind: 'message', data: new Uint8Array(view), ...from })
      }),
    )
  })

  it('carries any well-formed text as text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (text) => {
        expect(decode(receiver, throughRedis(encode(sender, text, at)))).toEqual({
          kind: 'message',
          data: text,
          ...from,
        })
      }),
    )
  })

  it("tells the instance's own messages apart", () => {
    expect(decode(sender, encode(sender, 'mine', at))).toEqual({ kind: 'echo' })
    expect(decode(sender, encode(sender, new Uint8Array([1, 2]), at))).toEqual({ kind: 'echo' })
  })

  it('carries the sequence number and whether it starts a run', () => {
    fc.assert(
      fc.property(fc.nat({ max: Number.MAX_SAFE_INTEGER }), fc.boolean(), (sequence, starts) => {
        const decoded = decode(receiver, encode(sender, `${sequence}`, { sequence, starts }))
        expect(decoded).toEqual({
          kind: 'message',
          data: `${sequence}`,
          publisher: sender,
          sequence,
          starts,
        })
      }),
    )
  })

  it('ignores what it did not write', () => {
    const foreigners = [
      '',
      'hello',
      'T123',
      `X${sender}1:payload`,
      `b${sender}1:\u0100`,
      // Version 1's envelope, with no sequence number.
      `T${sender}payload`,
      `t${sender}:no number`,
      `t${sender}12345678901234567:too many digits`,
      `t${sender}1x:not hex`,
      `t${'G'.repeat(16)}1:not an id`,
    ]
    for (const foreign of foreigners) {
      expect(decode(receiver, foreign)).toEqual({ kind: 'foreign' })
    }
  })

  it('makes 16 hex digits of random ids', () => {
    const ids = new Set(Array.from({ length: 1000 }, newInstanceId))
    expect(ids.size).toBe(1000)
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{16}$/)
  })
})
