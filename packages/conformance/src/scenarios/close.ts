/**
 * SPEC "Behaviour / The close handshake": one close frame, the timeout and its teardown, the
 * answer to a close the peer started, code checks.
 * @module
 */
import { NormalClosureMessage } from '@handshake/core'
import { describe, expect, it } from 'vitest'
import {
  CLOSE_AT_ONCE,
  CLOSE_AT_ONCE_TIMEOUT_MS,
  CLOSE_PAUSED_TIMEOUT_MS,
  SHORT_CLOSE_TIMEOUT_MS,
} from '../app.js'
import {
  closedWithin,
  expectEcho,
  expectText,
  floodUntilClosed,
  type HarnessRef,
  newId,
  sleep,
  waitForReadError,
  waitForReport,
  withId,
} from './support.js'

/** Generous bounds around the short timeout: a loaded machine is late, never early. */
const TIMEOUT_LOWER_MS = SHORT_CLOSE_TIMEOUT_MS - 100
const TIMEOUT_UPPER_MS = 3000

/** Registers the close-handshake scenarios. */
export function closeScenarios(harness: HarnessRef): void {
  describe('closed by the server', () => {
    it("completes a close while inbound is paused: the flooding peer's answer is read through the flood", async () => {
      const h = harness()
      const id = newId('close-paused')
      const peer = await h.dialControlled(withId('/close-paused', id))
      await floodUntilClosed(peer)
      const report = await waitForReadError(h, id)
      if (!h.differences.pauseInbound) {
        // The documented difference (Deno, workerd): the flood was closed with 1008 first.
        expect(report.readError).toMatchObject({ code: 1008 })
        return
      }
      expect(await peer.closeFrame).toMatchObject({ code: 4000, reason: 'server is done' })
      // Not the timeout: the socket was resumed, and the peer's answer read.
      expect(report.closeMs).toBeLessThan(CLOSE_PAUSED_TIMEOUT_MS / 2)
      expect(report.readError).toMatchObject({
        code: 4000,
        wasClean: h.differences.awaitsCloseAnswer,
      })
    })

    it('reaches the peer at once with the code of a close before serve awaits anything, and close() resolves long before the timeout', async () => {
      // The usual way to refuse a client once its request was seen. The controller starts
      // after the upgrade's handler returned, so the close is not stuck behind the 101.
      const h = harness()
      const id = newId('close-at-once')
      const peer = await h.dialControlled(withId('/close-at-once', id))
      expect(await closedWithin(peer, CLOSE_AT_ONCE_TIMEOUT_MS / 2)).toEqual(CLOSE_AT_ONCE)
      const report = await waitForReport(h, id, (r) => r.readError !== undefined)
      expect(report.closeMs).toBeLessThan(CLOSE_AT_ONCE_TIMEOUT_MS / 5)
      expect(report.stateAfterClose).toBe('closed')
      expect(report.readError).toMatchObject({
        code: CLOSE_AT_ONCE.code,
        wasClean: h.differences.awaitsCloseAnswer,
      })
    })

    it('sends one close frame and completes the handshake when the peer answers', async () => {
      const h = harness()
      const id = newId('close-answered')
      const peer = await h.dialControlled(withId('/close-timeout', id))
      await expectText(peer, 'closing')
      expect(await peer.closeFrame).toMatchObject({ code: 4000, reason: 'server is done' })
      expect((await closedWithin(peer)).code).toBe(4000)
      const report = await waitForReadError(h, id)
      // Clean, with the peer's answer: not a teardown at the timeout. Where the runtime ends
      // the connection as it sends its frame (Bun), no answer was read: not clean, honestly.
      expect(report.readError).toMatchObject({
        name: 'CloseError',
        code: 4000,
        wasClean: h.differences.awaitsCloseAnswer,
      })
      expect(report.stateAfterClose).toBe('closed')
      if (peer.closeFramesReceived !== undefined) expect(peer.closeFramesReceived).toBe(1)
    })

    it(`tears down a peer that never answers at the timeout (${SHORT_CLOSE_TIMEOUT_MS} ms), not before and not long after`, async () => {
      const h = harness()
      const id = newId('close-unanswered')
      const peer = await h.dialControlled(withId('/close-timeout', id), { answerClose: false })
      await expectText(peer, 'closing')
      const frame = await peer.closeFrame
      expect(frame).toMatchObject({ code: 4000, reason: 'server is done' })
      const report = await waitForReadError(h, id)
      if (!h.differences.awaitsCloseAnswer) {
        // The documented difference: the runtime ends the connection as it sends the frame.
        expect(report.closeMs).toBeLessThan(TIMEOUT_LOWER_MS)
        expect(report.readError).toMatchObject({ code: 4000 })
        expect(report.stateAfterClose).toBe('closed')
        const ended = await Promise.race([
          peer.ended,
          sleep(TIMEOUT_UPPER_MS).then(() => undefined),
        ])
        expect(ended, 'the runtime did not end the connection').toBeDefined()
        return
      }
      // The server stopped waiting at the timeout, on every runtime that waits.
      expect(report.closeMs).toBeGreaterThanOrEqual(TIMEOUT_LOWER_MS)
      expect(report.closeMs).toBeLessThan(TIMEOUT_UPPER_MS)
      expect(report.readError).toMatchObject({ code: 1006, wasClean: false })
      expect(report.stateAfterClose).toBe('closed')
      if (h.differences.terminateOnTimeout) {
        const ended = await Promise.race([
          peer.ended,
          sleep(TIMEOUT_UPPER_MS + 2000).then(() => undefined),
        ])
        expect(ended, 'the connection was never torn down').toBeDefined()
        const elapsed = (ended as number) - (frame as { at: number }).at
        expect(elapsed).toBeGreaterThanOrEqual(TIMEOUT_LOWER_MS)
        expect(elapsed).toBeLessThan(TIMEOUT_UPPER_MS)
      } else {
        // The runtime cannot tear TCP down: the server settled, but it did not cut the
        // connection before the timeout (it may never cut it).
        const ended = await Promise.race([peer.ended, sleep(0).then(() => undefined)])
        if (ended !== undefined)
          expect(ended - (frame as { at: number }).at).toBeGreaterThanOrEqual(TIMEOUT_LOWER_MS)
        peer.vanish()
      }
    })

    it('sends exactly one close frame for concurrent close() calls, which resolve together', async () => {
      const h = harness()
      const id = newId('concurrent-close')
      const peer = await h.dialControlled(withId('/concurrent-close', id))
      await expectText(peer, 'closing')
      expect(await peer.closeFrame).toMatchObject({ code: 4001, reason: 'first' })
      await closedWithin(peer)
      const report = await waitForReadError(h, id)
      expect(report.concurrentCloses).toMatchObject({ resolved: 3, rejected: 0 })
      expect(report.concurrentCloses?.spreadMs).toBeLessThan(100)
      expect(report.stateAfterClose).toBe('closed')
      if (peer.closeFramesReceived !== undefined) expect(peer.closeFramesReceived).toBe(1)
    })

    it('refuses invalid codes and over-long reasons with a RangeError, sending nothing', async () => {
      const h = harness()
      const id = newId('bad-close')
      const peer = await h.dialControlled(withId('/bad-close', id))
      // Still open after the refused calls, and the only close frame is the one after serve.
      await expectText(peer, 'still open')
      expect(await peer.closeFrame).toMatchObject({ code: 1000, reason: NormalClosureMessage })
      await closedWithin(peer)
      const report = await waitForReport(h, id, (r) => r.settled)
      expect(report.rangeErrors).toHaveLength(5)
      expect(report.stateAfterClose).toBe('open')
      if (peer.closeFramesReceived !== undefined) expect(peer.closeFramesReceived).toBe(1)
    })
  })

  describe('closed by the peer', () => {
    it('answers the close with the same code, and serve read sees it', async () => {
      const h = harness()
      const id = newId('peer-close')
      const peer = await h.dial(withId('/echo', id))
      await expectEcho(peer)
      peer.close(4321, 'peer is done')
      expect((await closedWithin(peer)).code).toBe(4321)
      expect((await waitForReadError(h, id)).readError).toMatchObject({
        name: 'CloseError',
        code: 4321,
        reason: 'peer is done',
        wasClean: true,
      })
    })

    it('answers a close with no code with a close with no code; serve read sees 1005', async () => {
      const h = harness()
      const id = newId('peer-close-no-code')
      const peer = await h.dialControlled(withId('/echo', id))
      await expectEcho(peer)
      peer.close()
      expect(await peer.closeFrame).toMatchObject({ code: 1005 })
      await closedWithin(peer)
      expect((await waitForReadError(h, id)).readError).toMatchObject({ code: 1005 })
      if (peer.closeFramesReceived !== undefined) expect(peer.closeFramesReceived).toBe(1)
    })

    it('answers a 1000 close, and the iteration in serve ends quietly (nothing logged)', async () => {
      const h = harness()
      const id = newId('peer-close-normal')
      const peer = await h.dial(withId('/echo', id))
      await expectEcho(peer)
      peer.close(1000, 'bye')
      expect((await closedWithin(peer)).code).toBe(1000)
      const report = await waitForReport(h, id, (r) => r.settled)
      expect(report.readError).toMatchObject({ code: 1000, wasClean: true })
      expect(report.logged).toEqual([])
    })
  })
}
