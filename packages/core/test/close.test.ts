import { describe, expect, it } from 'vitest'
import { assertSendableClose, utf8Length } from '../src/close.js'
import { CloseError, isCloseError, MAX_CLOSE_REASON_BYTES, truncateReason } from '../src/index.js'
import { connect } from '../src/testing.js'

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

// Issue 23 made the CloseError of a connection's end only when something reads it (9c2370e).
// What every reader sees must stay what it was: one error per end, the same object wherever it
// is read, with the end's code, reason and cleanness.
describe("a connection's end error, made when first read", () => {
  const settled = (promise: Promise<unknown>) =>
    promise.then(
      () => 'resolved',
      (err: unknown) => err,
    )

  it('is one CloseError for the pending read, later reads, sends and the signal', async () => {
    const seen: unknown[] = []
    let done: () => void = () => {}
    const finished = new Promise<void>((resolve) => {
      done = resolve
    })
    const peer = await connect({
      async serve(conn) {
        const signal = conn.signal
        seen.push(await settled(conn.read()))
        seen.push(signal.reason, await settled(conn.read()), await settled(conn.send('late')))
        done()
      },
    })
    peer.close(4001, 'bye')
    await finished
    const [read] = seen
    expect(read).toBeInstanceOf(CloseError)
    expect(read).toMatchObject({ code: 4001, reason: 'bye', wasClean: true })
    for (const other of seen) expect(other).toBe(read)
  })

  it('gives a signal first asked for after the end that same error', async () => {
    const seen: unknown[] = []
    let done: () => void = () => {}
    const finished = new Promise<void>((resolve) => {
      done = resolve
    })
    const peer = await connect({
      async serve(conn) {
        const read = await settled(conn.read())
        seen.push(read, conn.signal.aborted, conn.signal.reason)
        done()
      },
    })
    peer.vanish()
    await finished
    expect(seen[0]).toMatchObject({ code: 1006, wasClean: false })
    expect(seen[1]).toBe(true)
    expect(seen[2]).toBe(seen[0])
  })

  it("rejects a send while closing with the signal's reason: this side's code, not clean", async () => {
    const seen: unknown[] = []
    let done: () => void = () => {}
    const finished = new Promise<void>((resolve) => {
      done = resolve
    })
    await connect({
      async serve(conn) {
        const closing = conn.close(4000, 'going')
        seen.push(conn.state, conn.signal.reason, await settled(conn.send('x')))
        await closing
        seen.push(conn.signal.reason)
        done()
      },
    })
    await finished
    expect(seen[0]).toBe('closing')
    expect(seen[1]).toBeInstanceOf(CloseError)
    expect(seen[1]).toMatchObject({ code: 4000, reason: 'going', wasClean: false })
    expect(seen[2]).toBe(seen[1])
    // The signal keeps the reason it aborted with: the close that started the end.
    expect(seen[3]).toBe(seen[1])
  })

  it("hands an event controller's close the error its signal aborted with", async () => {
    const seen: unknown[] = []
    let done: () => void = () => {}
    const finished = new Promise<void>((resolve) => {
      done = resolve
    })
    const peer = await connect({
      open(conn) {
        seen.push(conn.signal)
      },
      message() {},
      close(_conn, err) {
        seen.push(err)
        done()
      },
    })
    peer.close(1001, 'away')
    await finished
    const [signal, err] = seen as [AbortSignal, CloseError]
    expect(err).toBeInstanceOf(CloseError)
    expect(err).toMatchObject({ code: 1001, reason: 'away', wasClean: true })
    expect(signal.reason).toBe(err)
  })
})
