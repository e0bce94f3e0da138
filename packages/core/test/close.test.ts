import { describe, expect, it } from 'vitest'
import { assertSendableClose, utf8Length } from '../src/close.js'
import { CloseError, isCloseError, MAX_CLOSE_REASON_BYTES, truncateReason } from '../src/index.js'

describe('isCloseError', () => {
  it.each([1000, 1001, 1005])('is true for %i', (code) => {
    expect(isCloseError(new CloseError(code, '', true))).toBe(true)
  })
  it.each([1002, 1006, 1007, 1009, 1011, 4000])('is false for %i', (code) => {
    expect(isCloseError(new CloseError(code, '', false))).toBe(false)
  })
  it('is false for other errors', () => {
    expect(isCloseError(new Error('x'))).toBe(false)
    expect(isCloseError({ code: 1000 })).toBe(false)
  })
})

describe('assertSendableClose', () => {
  it.each([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999])(
    'accepts %i',
    (code) => expect(() => assertSendableClose(code, '')).not.toThrow(),
  )
  it.each([0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 1000.5, Number.NaN])(
    'refuses %d with a RangeError',
    (code) => expect(() => assertSendableClose(code, '')).toThrow(RangeError),
  )
  it('refuses a reason over 123 UTF-8 bytes, counting bytes not characters', () => {
    expect(() => assertSendableClose(1000, 'a'.repeat(123))).not.toThrow()
    expect(() => assertSendableClose(1000, 'a'.repeat(124))).toThrow(/124 UTF-8 bytes/)
    expect(() => assertSendableClose(1000, 'é'.repeat(62))).toThrow(RangeError)
  })
})

describe('truncateReason', () => {
  it('keeps a short reason', () => expect(truncateReason('fine')).toBe('fine'))
  it('cuts on a character boundary', () => {
    const cut = truncateReason('€'.repeat(50)) // 3 bytes each
    expect(cut).toBe('€'.repeat(41))
    expect(utf8Length(cut)).toBeLessThanOrEqual(MAX_CLOSE_REASON_BYTES)
  })
  it('never splits a surrogate pair', () => {
    const cut = truncateReason(`a${'😀'.repeat(40)}`) // 4 bytes each
    expect(cut).toBe(`a${'😀'.repeat(30)}`)
  })
})
