/**
 * SPEC "Behaviour / After serve": how the upgrader closes by what `serve` did.
 * @module
 */
import { InternalErrorMessage, NormalClosureMessage, truncateReason } from '@handshake/core'
import { expect, it } from 'vitest'
import { DEBUG_ERROR_MESSAGE, ON_ERROR_THROWN_MESSAGE, THROWN_MESSAGE } from '../app.js'
import {
  closedWithin,
  expectText,
  type HarnessRef,
  newId,
  waitForReport,
  withId,
} from './support.js'

/** Registers the after-serve scenarios. */
export function afterServeScenarios(harness: HarnessRef): void {
  it(`closes with 1000 "${NormalClosureMessage}" when serve returns`, async () => {
    const h = harness()
    const id = newId('serve-returns')
    const peer = await h.dial(withId('/serve-returns', id))
    await expectText(peer, 'hello')
    expect(await closedWithin(peer)).toEqual({ code: 1000, reason: NormalClosureMessage })
    const report = await waitForReport(h, id, (r) => r.settled)
    expect(report.logged).toEqual([])
  })

  it('closes normally when serve throws a close error, and reports nothing', async () => {
    const h = harness()
    const id = newId('close-error')
    const peer = await h.dial(withId('/close-error', id))
    await expectText(peer, 'hello')
    expect(await closedWithin(peer)).toEqual({ code: 1000, reason: NormalClosureMessage })
    const report = await waitForReport(h, id, (r) => r.settled)
    expect(report.onErrorCalls).toEqual([])
    expect(report.logged).toEqual([])
  })

  for (const [route, how] of [
    ['/throws', 'synchronously'],
    ['/rejects', 'asynchronously'],
  ] as const) {
    it(`logs the error with its stack and closes with 1011 when serve throws ${how}`, async () => {
      const h = harness()
      const id = newId(route.slice(1))
      const peer = await h.dial(withId(route, id))
      if (route === '/rejects') await expectText(peer, 'hello')
      expect(await closedWithin(peer)).toEqual({ code: 1011, reason: InternalErrorMessage })
      const report = await waitForReport(h, id, (r) => r.logged.length > 0)
      expect(report.logged).toHaveLength(1)
      const logged = report.logged[0]?.join(' ') ?? ''
      expect(logged).toContain(THROWN_MESSAGE)
      // The stack, not just the message.
      expect(logged).toMatch(/\n\s+at /)
    })
  }

  it('calls onError instead of logging, then closes with 1011', async () => {
    const h = harness()
    const id = newId('throws-handled')
    const peer = await h.dial(withId('/throws-handled', id))
    expect(await closedWithin(peer)).toEqual({ code: 1011, reason: InternalErrorMessage })
    const report = await waitForReport(h, id, (r) => r.settled)
    expect(report.onErrorCalls).toEqual([THROWN_MESSAGE])
    expect(report.logged).toEqual([])
  })

  it('sends the error message as the 1011 reason under debug, cut to 123 bytes on a character boundary', async () => {
    const peer = await harness().dial(withId('/debug', newId('debug')))
    const close = await closedWithin(peer)
    const expected = truncateReason(DEBUG_ERROR_MESSAGE)
    // 'x' and 30 four-byte emoji: the 31st would cross 123 bytes.
    expect(new TextEncoder().encode(expected).byteLength).toBe(121)
    expect(close).toEqual({ code: 1011, reason: expected })
  })

  it('logs an error thrown by onError, and still closes with 1011', async () => {
    const h = harness()
    const id = newId('on-error-throws')
    const peer = await h.dial(withId('/on-error-throws', id))
    expect(await closedWithin(peer)).toEqual({ code: 1011, reason: InternalErrorMessage })
    const report = await waitForReport(h, id, (r) => r.logged.length > 0)
    expect(report.onErrorCalls).toEqual([THROWN_MESSAGE])
    expect(report.logged.flat().join(' ')).toContain(ON_ERROR_THROWN_MESSAGE)
  })
}
