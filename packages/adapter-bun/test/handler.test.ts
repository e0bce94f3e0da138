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
