/**
 * What a raw upgrade request (Node's `upgrade` event) leaves on its connection and in the
 * server's books, with a connection made of an EventEmitter.
 */
import { EventEmitter } from 'node:events'
import { Hono } from 'hono'
import { describe, expect, it } from 'vitest'
import {
  ADAPTER,
  type Adapter,
  createHub,
  deferredUpgrade,
  type RawHead,
  type RawSocket,
  type RawUpgradeRuntime,
  RawUpgrades,
} from '../src/adapter.js'
import { upgrade } from '../src/index.js'

/** A connection that records what is done to it. */
class FakeSocket extends EventEmitter {
  destroyed = false
  readableEnded = false
  destroys = 0
  unshifted: Uint8Array[] = []
  write(): boolean {
    return true
  }
  end(): void {}
  resume(): void {}
  unshift(bytes: Uint8Array): void {
    this.unshifted.push(bytes)
  }
  destroy(): void {
    this.destroys++
    if (this.destroyed) return
    this.destroyed = true
    this.emit('close')
  }
}

function headOf(socket: FakeSocket, url = '/'): RawHead {
  const rawHeaders = ['Host', 'example.test', 'Upgrade', 'websocket', 'Connection', 'Upgrade']
  rawHeaders.push('Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version', '13')
  return { url, method: 'GET', rawHeaders, socket: socket as unknown as RawSocket }
}

const noListeners = (socket: FakeSocket) =>
  Object.fromEntries(['error', 'close', 'end'].map((event) => [event, socket.listenerCount(event)]))

describe('an upgrade the app never answers', () => {
  // It failed before: the request stayed tracked (and was destroyed again at the shutdown)
  // however long ago its client had left.
  it('is forgotten as soon as its client leaves', async () => {
    const runtime: RawUpgradeRuntime = {
      fetch: () => new Promise(() => {}),
      passOn: () => false,
      complete: () => true,
    }
    const upgrades = new RawUpgrades(runtime)
    const socket = new FakeSocket()
    upgrades.answer(headOf(socket), socket as unknown as RawSocket, new Uint8Array(0), {})
    await new Promise((resolve) => setTimeout(resolve, 10))
    // The client leaves.
    socket.destroyed = true
    socket.emit('close')
    const hub = createHub()
    await upgrades.shutdown(hub.connections, { timeout: 100 }, (done) => done())
    expect(socket.destroys).toBe(0)
  })

  it('is still torn down by a shutdown while its client stays', async () => {
    const upgrades = new RawUpgrades({
      fetch: () => new Promise(() => {}),
      passOn: () => false,
      complete: () => true,
    })
    const socket = new FakeSocket()
    upgrades.answer(headOf(socket), socket as unknown as RawSocket, new Uint8Array(0), {})
    await upgrades.shutdown(createHub().connections, { timeout: 100 }, (done) => done())
    expect(socket.destroys).toBe(1)
  })
})

describe('a completed upgrade', () => {
  // It failed before: the error listener that guards the request stayed for the connection's
  // life, beside the runtime's own.
  it('leaves no listener of its own on the connection, and gives the runtime the first frames', async () => {
    const socket = new FakeSocket()
    let completed = false
    const hub = createHub()
    const adapter: Adapter = { name: 'fake', hub: () => hub, upgrade: deferredUpgrade('no') }
    const app = new Hono().get('/', upgrade({ serve: async () => {} }))
    const upgrades = new RawUpgrades({
      fetch: (request, env) => app.fetch(request, Object.assign(env, { [ADAPTER]: adapter })),
      passOn: () => false,
      complete: (accepted) => {
        completed = true
        accepted.abandon()
        return true
      },
    })
    const first = new Uint8Array([0x81, 0x80, 1, 2, 3, 4])
    upgrades.answer(headOf(socket), socket as unknown as RawSocket, first, {})
    expect(socket.unshifted).toEqual([])
    await expect.poll(() => completed).toBe(true)
    await new Promise((resolve) => setTimeout(resolve, 10))
    expect(noListeners(socket)).toEqual({ error: 0, close: 0, end: 0 })
    expect(socket.unshifted).toEqual([first])
  })
})
