/**
 * The adapter's free bound on `bufferedAmount` (`bufferedAtMost`, kept by Deno's adapter): the
 * core reads `bufferedAmount`, a native call there, only when the bound is past the limit it
 * checks, and still decides on the real amount then.
 */
import { describe, expect, it } from 'vitest'
import { over } from '../src/outbound.js'
import type { RuntimeSocket } from '../src/port.js'

/** A socket whose real buffered amount is `buffered`, and that counts the reads of it. */
function socket(buffered: number, bufferedAtMost?: number) {
  const fake = {
    reads: 0,
    bufferedAtMost,
    get bufferedAmount() {
      fake.reads++
      return buffered
    },
    emitsDrain: false,
    send() {},
    close() {},
  }
  return fake as typeof fake & RuntimeSocket
}

describe('over(): the bound on bufferedAmount', () => {
  it('reads bufferedAmount when the adapter keeps no bound', () => {
    const under = socket(10)
    expect(over(under, 100)).toBe(false)
    const past = socket(101)
    expect(over(past, 100)).toBe(true)
    expect([under.reads, past.reads]).toEqual([1, 1])
  })

  it('does not read it while the bound is within the limit', () => {
    const bounded = socket(10, 100)
    expect(over(bounded, 100)).toBe(false)
    expect(bounded.reads).toBe(0)
  })

  it('reads it once the bound is past the limit, and decides on the real amount', () => {
    const drained = socket(10, 101)
    expect(over(drained, 100)).toBe(false)
    const full = socket(101, 200)
    expect(over(full, 100)).toBe(true)
    expect([drained.reads, full.reads]).toEqual([1, 1])
  })
})
