/**
 * SPEC "Behaviour / The close handshake", last rule: a faulty or vanished peer ends its own
 * connection with the right code, `serve`'s pending read rejects with it, and nothing else
 * notices.
 * @module
 */
import { describe, expect, it } from 'vitest'
import { type ControlledPeer, faultCode, type ProtocolFault } from '../peers.js'
import type { Harness } from '../targets.js'
import {
  closedWithin,
  expectEcho,
  expectText,
  type HarnessRef,
  newId,
  sleep,
  waitForReadError,
  waitForReport,
  withId,
} from './support.js'

/**
 * Opens a bystander and a peer with a pending server read, lets `misbehave` act, then checks
 * the server read's error and that the bystander and a new connection still work.
 */
async function expectIsolatedFault(
  h: Harness,
  label: string,
  misbehave: (peer: ControlledPeer) => void,
  code: number,
): Promise<void> {
  const bystander = await h.dial(withId('/echo', newId(`${label}-bystander`)))
  const id = newId(label)
  const peer = await h.dialControlled(withId('/echo', id))
  await expectEcho(peer)
  // The server is now waiting in read(): the fault must reject that pending read.
  await sleep(10)
  misbehave(peer)
  const report = await waitForReadError(h, id)
  expect(report.readError).toMatchObject({ name: 'CloseError', code })
  const frame = await Promise.race([peer.closeFrame, sleep(3000).then(() => undefined)])
  // A runtime may end the connection without a close frame; when it sends one, it has the code.
  if (frame !== undefined && code !== 1006) expect(frame.code).toBe(code)
  peer.vanish()
  await expectEcho(bystander)
  await expectEcho(await h.dial(withId('/echo', newId(`${label}-after`))))
}

/** Registers the fault scenarios. */
export function faultScenarios(harness: HarnessRef): void {
  for (const kind of ['invalid-utf8', 'unmasked', 'bad-opcode'] as ProtocolFault[]) {
    it(`ends the connection with ${faultCode[kind]} on ${kind}; others keep working`, async () => {
      const h = harness()
      if (kind === 'unmasked' && !h.differences.rejectsUnmasked) {
        // The documented difference: the unmasked frame ('hi') is read and echoed.
        const id = newId('unmasked-lenient')
        const peer = await h.dialControlled(withId('/echo', id))
        await expectEcho(peer)
        peer.fault(kind)
        await expectText(peer, 'hi')
        await expectEcho(peer)
        expect((await h.report(id))?.readError).toBeUndefined()
        return
      }
      if (kind === 'invalid-utf8' && !h.differences.rejectsInvalidUtf8) {
        // The documented difference: 'hi', 0xC3 0x28 is decoded with U+FFFD and echoed.
        const id = newId('utf8-lenient')
        const peer = await h.dialControlled(withId('/echo', id))
        await expectEcho(peer)
        peer.fault(kind)
        await expectText(peer, 'hi\uFFFD(')
        await expectEcho(peer)
        expect((await h.report(id))?.readError).toBeUndefined()
        return
      }
      await expectIsolatedFault(h, kind, (peer) => peer.fault(kind), faultCode[kind])
    })
  }

  it('rejects the pending read with 1006 when the peer vanishes mid-message; others keep working', async () => {
    await expectIsolatedFault(harness(), 'vanish-mid', (peer) => peer.vanishMidMessage(), 1006)
  })

  it('rejects the pending read with 1006 when the peer vanishes between messages', async () => {
    await expectIsolatedFault(harness(), 'vanish', (peer) => peer.vanish(), 1006)
  })

  describe('after a fault', () => {
    it('sends nothing more to the faulty peer and settles serve', async () => {
      const h = harness()
      const id = newId('fault-settles')
      const peer = await h.dialControlled(withId('/echo', id))
      await expectEcho(peer)
      // A fault every runtime refuses: invalid UTF-8 where the runtime checks it, else a bad opcode.
      const kind: ProtocolFault = h.differences.rejectsInvalidUtf8 ? 'invalid-utf8' : 'bad-opcode'
      peer.fault(kind)
      await closedWithin(peer)
      const report = await waitForReport(h, id, (r) => r.settled)
      expect(report.readError?.code).toBe(faultCode[kind])
      expect(report.messagesRead).toBe(1)
    })
  })
}
