/**
 * Network only: what can be seen or done only on the wire, with the raw TCP peer.
 * @module
 */
import { describe, expect, it } from 'vitest'
import { SMALL_MAX_MESSAGE_SIZE } from '../app.js'
import { Opcode } from '../frames.js'
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

/** Registers the raw-TCP scenarios. */
export function wireScenarios(harness: () => NetworkHarness): void {
  describe('frames on the wire (raw TCP peer)', () => {
    it('sends unmasked frames, as a server must (RFC 6455 §5.1)', async () => {
      const peer = await harness().dialRaw(withId('/serve-returns', newId('unmasked-server')))
      await expectText(peer, 'hello')
      await closedWithin(peer)
      expect(peer.frames.length).toBeGreaterThanOrEqual(2)
      expect(peer.frames.every((frame) => !frame.masked)).toBe(true)
    })

    it('puts together a fragmented message', async () => {
      const peer = await harness().dialRaw(withId('/echo', newId('fragments')))
      const encoder = new TextEncoder()
      peer.sendFrame({ opcode: Opcode.Text, payload: encoder.encode('frag'), fin: false })
      peer.sendFrame({ opcode: Opcode.Continuation, payload: encoder.encode('men'), fin: false })
      peer.sendFrame({ opcode: Opcode.Continuation, payload: encoder.encode('ted') })
      await expectText(peer, 'fragmented')
    })

    it('answers a ping from the peer with a pong carrying the same payload', async () => {
      const peer = await harness().dialRaw(withId('/echo', newId('peer-ping')))
      peer.sendFrame({ opcode: Opcode.Ping, payload: new TextEncoder().encode('are you there') })
      await expectEcho(peer)
      const pong = peer.frames.find((frame) => frame.opcode === Opcode.Pong)
      expect(pong && new TextDecoder().decode(pong.payload)).toBe('are you there')
    })

    it('closes with 1009 on a frame over maxMessageSize', async () => {
      const h = harness()
      const id = newId('raw-oversized')
      const peer = await h.dialRaw(withId('/max-message', id))
      peer.send(patternBytes(SMALL_MAX_MESSAGE_SIZE * 4))
      expect(await peer.closeFrame).toMatchObject({ code: 1009 })
      expect((await waitForReadError(h, id)).readError?.code).toBe(1009)
    })

    it('closes with 1002 on reserved bits set with no extension', async () => {
      const h = harness()
      const id = newId('raw-rsv')
      const peer = await h.dialRaw(withId('/echo', id))
      await expectEcho(peer)
      peer.sendFrame({ opcode: Opcode.Text, payload: new TextEncoder().encode('hi'), rsv: 0b010 })
      expect((await waitForReadError(h, id)).readError?.code).toBe(1002)
      await expectEcho(await h.dial(withId('/echo', newId('raw-rsv-after'))))
    })

    it('answers a close with no code with an empty close frame', async () => {
      const peer = await harness().dialRaw(withId('/echo', newId('raw-empty-close')))
      await expectEcho(peer)
      peer.close()
      await closedWithin(peer)
      const closes = peer.frames.filter((frame) => frame.opcode === Opcode.Close)
      expect(closes).toHaveLength(1)
      expect(closes[0]?.payload.byteLength).toBe(0)
    })

    it('echoes a binary message sent in one write with the next one', async () => {
      const peer = await harness().dialRaw(withId('/echo', newId('raw-coalesced')))
      const first = patternBytes(300, 1)
      const second = patternBytes(70_000, 2)
      peer.send(first)
      peer.send(second)
      expect(await readBinary(peer)).toEqual(first)
      expect(await readBinary(peer)).toEqual(second)
    })
  })
}
