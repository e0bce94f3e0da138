/**
 * What a raw upgrade request (Node's `upgrade` event) leaves on its connection and in the
 * server's books, with a connection made of an EventEmitter.
 */
import { EventEmitter } from 'node:events'
import { Hono } from 'hono'
import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  ADAPTER,
  type Adapter,
  createHub,
  deferredUpgrade,
  type RawHead,
  type RawSocket,
  type RawUpgradeRuntime,
  RawUpgrades,
  RequestView,
  rawRequest,
  validateHandshake,
} from '../src/adapter.js'
import { isSameOrigin, upgrade } from '../src/index.js'
import { headerOf } from '../src/serving.js'

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

describe("a raw request's headers (issue 23, churn)", () => {
  afterEach(() => {
    vi.restoreAllMocks()
  })

  const rawHeaders = ['Host', 'example.test', 'X-Two', ' a ', 'x-two', 'b\t', 'Empty', '']
  const head = (headers: string[]): RawHead => ({
    url: '/',
    rawHeaders: headers,
    socket: new FakeSocket() as unknown as RawSocket,
  })

  it('reads each header as Headers.get would, repeated ones joined', () => {
    const view = rawRequest(head(rawHeaders))
    const made = new Headers()
    for (let i = 0; i < rawHeaders.length; i += 2) {
      made.append(rawHeaders[i] as string, rawHeaders[i + 1] as string)
    }
    for (const name of ['host', 'x-two', 'empty', 'absent']) {
      expect(headerOf(view, name), name).toBe(made.get(name))
    }
    expect(headerOf(view, 'x-two')).toBe('a, b')
  })

  it('reads the Headers once they are made, changes included', () => {
    const view = rawRequest(head(rawHeaders))
    view.headers.set('x-two', 'c')
    expect(headerOf(view, 'x-two')).toBe('c')
  })

  it('are not made by the handshake checks, nor by a whole upgrade', async () => {
    const made = vi.spyOn(RequestView.prototype, 'headers', 'get')
    const socket = new FakeSocket()
    const view = rawRequest(headOf(socket))
    expect(validateHandshake(view)).toBeUndefined()
    expect(isSameOrigin(view)).toBe(true)
    expect(made).not.toHaveBeenCalled()

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
    upgrades.answer(headOf(socket), socket as unknown as RawSocket, new Uint8Array(), {})
    await expect.poll(() => completed).toBe(true)
    expect(made).not.toHaveBeenCalled()
  })
})
