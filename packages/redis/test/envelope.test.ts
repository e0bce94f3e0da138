/**
 * The envelope alone: every message survives the round trip through UTF-8, the way both clients
 * carry it, and an instance tells its own messages and foreign ones apart.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { bytesToString, decode, encode, newInstanceId, positionedHead } from '../src/envelope.js'

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

describe('the envelope of a message with a position', () => {
  const sender = newInstanceId()
  const receiver = newInstanceId()
  /** What the publish script sends: the head, then the epoch, the offset and the payload. */
  const positioned = (data: string | Uint8Array, number: number, epoch: string, offset: number) =>
    `${positionedHead(sender, typeof data !== 'string', number)}${epoch}:${offset}:${typeof data === 'string' ? data : bytesToString(data)}`

  it('carries text, bytes, the epoch and the offset exactly; the sender knows its own by number', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ unit: 'grapheme' }), fc.uint8Array({ maxLength: 2000 })),
        fc.nat(2 ** 40),
        fc.stringMatching(/^[0-9a-z]{16,40}$/),
        fc.integer({ min: 1, max: 2 ** 50 }),
        (data, number, epoch, offset) => {
          const message = throughRedis(positioned(data, number, epoch, offset))
          expect(decode(receiver, message)).toEqual({ kind: 'positioned', data, epoch, offset })
          expect(decode(sender, message)).toEqual({ kind: 'own', number, epoch, offset })
        },
      ),
    )
  })

  it('is foreign when its fields are not what the script writes', () => {
    for (const message of [
      `p${sender}`,
      `p${sender}1:`,
      `p${sender}1:epoch`,
      `p${sender}1:ep och:3:x`,
      `p${sender}1:epoch:x3:x`,
      `q${sender}1:epoch:3:\u0100`,
    ]) {
      expect(decode(receiver, message)).toEqual({ kind: 'foreign' })
    }
  })
})
