/**
 * Network only: a browser's API (undici's `WebSocket`) sees the same behaviour as `ws`.
 * @module
 */
import { InternalErrorMessage, NormalClosureMessage } from '@handshake/core'
import { describe, expect, it } from 'vitest'
import type { NetworkHarness } from '../targets.js'
import {
  closedWithin,
  expectEcho,
  expectText,
  newId,
  patternBytes,
  readBinary,
  waitForReadError,
  withId,
} from './support.js'

/** Registers the undici scenarios. */
export function clientScenarios(harness: () => NetworkHarness): void {
  describe("undici's WebSocket (the browser API)", () => {
    it('echoes text and binary', async () => {
      const peer = await harness().dialWith('undici', withId('/echo', newId('undici-echo')))
      await expectEcho(peer, 'héllo 😀')
      const bytes = patternBytes(100_000, 5)
      peer.send(bytes)
      expect(await readBinary(peer)).toEqual(bytes)
    })

    it('gets the close code and reason when serve returns, and when it throws', async () => {
      const h = harness()
      const returns = await h.dialWith('undici', withId('/serve-returns', newId('undici-returns')))
      await expectText(returns, 'hello')
      expect(await closedWithin(returns)).toEqual({ code: 1000, reason: NormalClosureMessage })
      const throws = await h.dialWith('undici', withId('/throws', newId('undici-throws')))
      expect(await closedWithin(throws)).toEqual({ code: 1011, reason: InternalErrorMessage })
    })

    it('gets the chosen subprotocol; with none chosen, the browser API fails the connection', async () => {
      const h = harness()
      const chosen = await h.dialWith('undici', withId('/subprotocols', newId('undici-proto')), {
        protocols: ['v1.chat', 'v2.chat'],
      })
      expect(chosen.protocol).toBe('v2.chat')
      await expectText(chosen, 'protocol:v2.chat')
      // WHATWG WebSocket: a client that offered protocols fails when the server picks none. The
      // server's side of it (101 with no protocol) is checked with the raw peer.
      await expect(
        h.dialWith('undici', withId('/subprotocols', newId('undici-none')), {
          protocols: ['v9.chat'],
        }),
      ).rejects.toThrow(/could not connect/)
    })

    it('starts a close that the server answers with the same code', async () => {
      const h = harness()
      const id = newId('undici-close')
      const peer = await h.dialWith('undici', withId('/echo', id))
      await expectEcho(peer)
      peer.close(4100, 'browser leaves')
      expect((await closedWithin(peer)).code).toBe(4100)
      expect((await waitForReadError(h, id)).readError).toMatchObject({
        code: 4100,
        wasClean: true,
      })
    })
  })
}
