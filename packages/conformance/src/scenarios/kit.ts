/**
 * Memory only: what the test kit shows and a network peer cannot, such as whether the server
 * terminated the connection or the peer closed it cleanly.
 * @module
 */
import { NormalClosureMessage } from '@handshake/core'
import { describe, expect, it } from 'vitest'
import type { MemoryHarness } from '../targets.js'
import { newId, waitForReadError, withId } from './support.js'

/** Registers the test-kit scenarios. */
export function kitScenarios(harness: () => MemoryHarness): void {
  describe('test kit', () => {
    it('reports a terminated, unclean end when the peer never answers the close', async () => {
      const h = harness()
      const id = newId('kit-terminated')
      const peer = await h.connectKit(withId('/close-timeout', id), { answerClose: false })
      expect(await peer.closed).toEqual({ code: 4000, reason: 'server is done', wasClean: false })
      expect(peer.terminated).toBe(true)
      expect((await waitForReadError(h, id)).readError?.code).toBe(1006)
    })

    it('reports a clean end, not terminated, when the peer answers', async () => {
      const h = harness()
      const peer = await h.connectKit(withId('/serve-returns', newId('kit-clean')))
      expect(await peer.read()).toEqual({ type: 'text', data: 'hello' })
      expect(await peer.closed).toEqual({
        code: 1000,
        reason: NormalClosureMessage,
        wasClean: true,
      })
      expect(peer.terminated).toBe(false)
    })

    it('rejects a read after the end with the close the peer saw', async () => {
      const h = harness()
      const peer = await h.connectKit(withId('/throws', newId('kit-read-after')))
      await peer.closed
      await expect(peer.read()).rejects.toMatchObject({ name: 'CloseError', code: 1011 })
    })
  })
}
