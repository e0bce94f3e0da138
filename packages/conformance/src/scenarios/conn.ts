/**
 * SPEC "Behaviour / Conn": messages both ways, byte-exact views, bounded inbound data, ping.
 * @module
 */
import { describe, expect, it } from 'vitest'
import { SLOW_READER_DELAY_MS, SMALL_INBOUND_BUFFER, SMALL_MAX_MESSAGE_SIZE } from '../app.js'
import type { Peer } from '../peers.js'
import {
  closedWithin,
  expectEcho,
  expectText,
  type HarnessRef,
  newId,
  patternBytes,
  readBinary,
  readText,
  sleep,
  waitForReadError,
  withId,
} from './support.js'

/** The flood of `/slow-reader`: 1 KiB messages, far over its inbound bound. */
const FLOOD_MESSAGES = 1024
const FLOOD_MESSAGE_BYTES = 1024

/** How much the flood lets its own send buffer hold before it waits, like a TCP window. */
const FLOOD_WINDOW_BYTES = 64 * 1024

/**
 * Sends the flood in batches, yielding between them as a network does, then `end`. Like any
 * sender it waits while its transport holds more than a window: that is how a pausing server
 * slows it down. Stops when the peer can no longer send (the server closed).
 */
async function flood(peer: Peer): Promise<void> {
  const message = patternBytes(FLOOD_MESSAGE_BYTES)
  let closed = false
  void peer.closed.then(() => {
    closed = true
  })
  try {
    for (let sent = 0; sent < FLOOD_MESSAGES && !closed; sent++) {
      peer.send(message)
      if (sent % 16 === 15) await sleep(0)
      while (peer.bufferedAmount > FLOOD_WINDOW_BYTES && !closed) await sleep(5)
    }
    if (closed) return
    peer.send('end')
  } catch {
    // The server closed mid-flood (1008): what follows checks it.
  }
}

/** Registers the Conn scenarios. */
export function connScenarios(harness: HarnessRef): void {
  describe('messages', () => {
    it('echoes text, multibyte included', async () => {
      const peer = await harness().dial(withId('/echo', newId('echo-text')))
      for (const text of ['hello', '', 'héllo wörld 😀 你好', 'x'.repeat(125), 'y'.repeat(126)]) {
        peer.send(text)
        await expectText(peer, text)
      }
    })

    it('echoes binary byte for byte, every byte value included', async () => {
      const peer = await harness().dial(withId('/echo', newId('echo-binary')))
      for (const bytes of [patternBytes(256), new Uint8Array(0), patternBytes(65_536, 3)]) {
        peer.send(bytes)
        expect(await readBinary(peer)).toEqual(bytes)
      }
    })

    it('echoes large messages (512 KiB binary, 300 000 characters of text)', async () => {
      const peer = await harness().dial(withId('/echo', newId('echo-large')))
      const bytes = patternBytes(512 * 1024, 11)
      peer.send(bytes)
      expect(await readBinary(peer)).toEqual(bytes)
      const text = 'abcdé'.repeat(60_000)
      peer.send(text)
      expect(await readText(peer)).toBe(text)
    })

    it('keeps the order of many messages sent at once', async () => {
      const peer = await harness().dial(withId('/echo', newId('echo-order')))
      for (let i = 0; i < 200; i++) peer.send(`message ${i}`)
      for (let i = 0; i < 200; i++) await expectText(peer, `message ${i}`)
    })

    it('sends exactly the bytes of a Uint8Array view, not its whole buffer', async () => {
      const peer = await harness().dial(withId('/echo-view', newId('echo-view')))
      for (const length of [1, 5, 125, 126, 70_000]) {
        const bytes = patternBytes(length, length)
        peer.send(bytes)
        expect(await readBinary(peer)).toEqual(bytes)
      }
    })

    it('hands serve each binary message as a view of exactly its bytes', async () => {
      const peer = await harness().dial(withId('/binary-shape', newId('binary-shape')))
      for (const length of [0, 10, 4096]) {
        peer.send(patternBytes(length))
        const shape = JSON.parse(await readText(peer))
        expect(shape).toEqual({ byteLength: length, byteOffset: 0, bufferByteLength: length })
      }
    })
  })

  describe('bounded inbound data', () => {
    it(`accepts a message of exactly maxMessageSize (${SMALL_MAX_MESSAGE_SIZE} bytes)`, async () => {
      const peer = await harness().dial(withId('/max-message', newId('max-ok')))
      const bytes = patternBytes(SMALL_MAX_MESSAGE_SIZE)
      peer.send(bytes)
      expect(await readBinary(peer)).toEqual(bytes)
    })

    it('closes with 1009 on a binary message over maxMessageSize, and keeps serving', async () => {
      const h = harness()
      const id = newId('max-binary')
      const peer = await h.dial(withId('/max-message', id))
      await expectEcho(peer)
      peer.send(patternBytes(SMALL_MAX_MESSAGE_SIZE + 1))
      expect((await closedWithin(peer)).code).toBe(1009)
      expect((await waitForReadError(h, id)).readError?.code).toBe(1009)
      await expectEcho(await h.dial(withId('/max-message', newId('max-after'))))
    })

    it('closes with 1009 on a text message over maxMessageSize in UTF-8 bytes', async () => {
      const h = harness()
      const id = newId('max-text')
      const peer = await h.dial(withId('/max-message', id))
      // 400 characters, 1200 bytes: under the limit in characters, over it in bytes.
      peer.send('€'.repeat(400))
      expect((await closedWithin(peer)).code).toBe(1009)
      expect((await waitForReadError(h, id)).readError?.code).toBe(1009)
    })

    it(`holds a flood faster than serve reads (bound ${SMALL_INBOUND_BUFFER} bytes): paused, or closed with 1008`, async () => {
      const h = harness()
      const id = newId('flood')
      const peer = await h.dial(withId('/slow-reader', id))
      await flood(peer)
      if (h.differences.pauseInbound) {
        // Paused: nothing is lost; serve reads it all once it starts reading.
        const answer = await readText(peer).catch(async (err) => {
          throw new Error(`${err}; server report: ${JSON.stringify(await h.report(id))}`)
        })
        expect(answer).toBe(`count:${FLOOD_MESSAGES}`)
        const report = await h.report(id)
        expect(report?.readError).toBeUndefined()
      } else {
        const close = await closedWithin(peer, SLOW_READER_DELAY_MS + 8000)
        if (h.differences.closeReachesSendingPeer) expect(close.code).toBe(1008)
        else expect([1006, 1008]).toContain(close.code)
        const report = await waitForReadError(h, id)
        expect(report.readError?.code).toBe(1008)
        // What arrived before the close is still read, and it is less than the flood.
        expect(report.messagesRead).toBeLessThan(FLOOD_MESSAGES)
      }
    })
  })

  describe('ping', () => {
    it('pings where the runtime can, and says it cannot where it cannot', async () => {
      const h = harness()
      const peer = await h.dial(withId('/ping', newId('ping')))
      const answer = await readText(peer)
      if (h.differences.ping) expect(answer).toBe('pong')
      else expect(answer).toBe('cannot-ping:Error')
      await expectEcho(peer)
    })
  })
}
