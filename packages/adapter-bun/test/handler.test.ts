/**
 * The `websocket` handler object's own work, in Node (no Bun needed): what it does with a socket
 * that is not a Handshake connection's.
 */
import { expect, it } from 'vitest'
import { websocket } from '../src/index.js'

it('copies no binary message that no connection takes (it failed before: the bytes were copied first)', () => {
  let reads = 0
  // A view of a larger buffer, as Bun hands a `nodebuffer` message over: taking it means a copy.
  const view = new Uint8Array(64).subarray(8, 16)
  const message = new Proxy(view, {
    get(target, key) {
      reads++
      return Reflect.get(target, key)
    },
  })
  // A socket upgraded by other code, with data of its own.
  const foreign = { data: { user: 'other' } }
  websocket.message?.(foreign as never, message as never)
  expect(reads).toBe(0)
})

// It failed before: every key of the options was spread into Bun's handler, so a JS caller's
// untyped `publishToSelf` or `closeOnBackpressureLimit` reached Bun and changed what the core
// relies on (a publisher not getting its own message, a slow subscriber's bound).
it("gives Bun only the documented options, and none of Bun's others", async () => {
  const { createWebSocketHandler } = await import('../src/index.js')
  const options = {
    idleTimeout: 30,
    sendPings: false,
    perMessageDeflate: true,
    maxMessageSize: 4096,
    backpressureLimit: 8 * 1024 * 1024,
    publishToSelf: true,
    closeOnBackpressureLimit: true,
  }
  const handler = createWebSocketHandler(options as never) as unknown as Record<string, unknown>
  expect(handler).toMatchObject({
    idleTimeout: 30,
    sendPings: false,
    perMessageDeflate: true,
    maxPayloadLength: 4096,
    backpressureLimit: 8 * 1024 * 1024,
  })
  for (const key of ['publishToSelf', 'closeOnBackpressureLimit', 'maxMessageSize']) {
    expect(key in handler).toBe(false)
  }
  // Options left out are left to Bun's defaults, not set to undefined.
  const plain = createWebSocketHandler({}) as unknown as Record<string, unknown>
  for (const key of ['idleTimeout', 'sendPings', 'perMessageDeflate'])
    expect(key in plain).toBe(false)
})
