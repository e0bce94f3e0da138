/**
 * Network only: where a runtime applies `maxMessageSize`. A runtime that checks the length a
 * frame's header announces refuses an oversized message before it arrives; one that buffers the
 * whole message first (Deno, workerd) holds all of it in memory before the core can refuse it.
 * That is the runtime's own behaviour, asserted here as a difference (issue 18).
 * @module
 */
import { expect, it } from 'vitest'
import { encodeFrame, Opcode } from '../frames.js'
import type { NetworkHarness } from '../targets.js'
import { closedWithin, newId, patternBytes, sleep, waitForReadError, withId } from './support.js'

/** What the frame announces: twice the default `maxMessageSize` (1 MiB) of `/echo`. */
const ANNOUNCED_BYTES = 2 * 1024 * 1024

/** What is sent of it at first: far less than the limit. */
const FIRST_PART_BYTES = 64 * 1024

/** How long a runtime that refuses on the header gets to do so. */
const EARLY_MS = 2000

/** Registers the `maxMessageSize` scenarios that need a raw TCP peer. */
export function messageLimitScenarios(harness: () => NetworkHarness): void {
  it(`refuses a frame that announces more than maxMessageSize with 1009 before its payload arrives, where the runtime reads the header (within ${EARLY_MS} ms)`, async () => {
    const h = harness()
    const id = newId('oversized-announced')
    const peer = await h.dialRaw(withId('/echo', id))
    const frame = encodeFrame({ opcode: Opcode.Binary, payload: patternBytes(ANNOUNCED_BYTES) })
    peer.write(frame.subarray(0, FIRST_PART_BYTES))
    const early = await Promise.race([
      peer.closeFrame.then((close) => close ?? 'ended without a close frame'),
      sleep(EARLY_MS).then(() => 'still open' as const),
    ])
    if (h.differences.refusesOversizedEarly) {
      expect(early).toMatchObject({ code: 1009 })
    } else {
      // The documented difference (Deno, workerd): nothing happens until the whole message is
      // in, held in the runtime's memory; then the core refuses it.
      expect(early).toBe('still open')
      peer.write(frame.subarray(FIRST_PART_BYTES))
      expect((await closedWithin(peer)).code).toBe(1009)
    }
    expect((await waitForReadError(h, id)).readError?.code).toBe(1009)
  })
}
