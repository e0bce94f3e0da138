import { Hono } from 'hono'
import { describe, expect, it, vi } from 'vitest'
import { createHub } from '../src/adapter.js'
import { type Conn, type Controller, upgrade } from '../src/index.js'
import { connect, type TestPeer, UpgradeRejectedError } from '../src/testing.js'

class Echo implements Controller {
  async serve(conn: Conn) {
    for await (const msg of conn) await conn.send(msg.data)
  }
}

/** Reads nothing, so a flood pauses the socket; returns once its connection starts closing. */
class Holder implements Controller {
  async serve(conn: Conn) {
    await new Promise((resolve) => conn.signal.addEventListener('abort', resolve))
  }
}

/** Reads nothing, so a flood pauses the socket; ignores its signal. */
class Stubborn implements Controller {
  async serve() {
    await new Promise((resolve) => setTimeout(resolve, 60_000).unref?.())
  }
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0))

function race<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  return Promise.race([
    promise,
    new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), ms)),
  ])
}

describe('the connection registry', () => {
  it('holds each open connection once and forgets it when it closes', async () => {
    const hub = createHub()
    const registry = hub.connections
    const a = await connect(new Echo(), '/', { hub })
    const b = await connect(new Echo(), '/', { hub })
    await tick()
    expect(registry.size).toBe(2)
    expect([...registry].every((conn) => conn.state === 'open')).toBe(true)
    a.close(1000)
    await a.closed
    expect(registry.size).toBe(1)
    b.vanish()
    await b.closed
    await tick()
    expect(registry.size).toBe(0)
  })

  it("is the hub's: a shutdown of one hub leaves another hub's connections open", async () => {
    const one = createHub()
    const other = createHub()
    const closing = await connect(new Echo(), '/', { hub: one })
    const staying = await connect(new Echo(), '/', { hub: other })
    await tick()
    await one.connections.shutdown({ timeout: 1000 })
    expect(await closing.closed).toMatchObject({ code: 1001 })
    expect(other.connections.accepting).toBe(true)
    expect(other.connections.size).toBe(1)
    staying.send('still here')
    expect(await staying.read()).toEqual({ type: 'text', data: 'still here' })
    await connect(new Echo(), '/', { hub: other })
  })
})

describe('graceful shutdown', () => {
  it('sends 1001 to every connection, waits for the answers, and resolves', async () => {
    const hub = createHub()
    const registry = hub.connections
    const peers = await Promise.all([1, 2, 3].map(() => connect(new Echo(), '/', { hub })))
    await tick()
    await registry.shutdown()
    for (const peer of peers) {
      expect(await peer.closed).toEqual({
        code: 1001,
        reason: 'Server shutting down',
        wasClean: true,
      })
    }
    expect(registry.size).toBe(0)
  })

  it('refuses new upgrades with 503 and the JSON body once it started', async () => {
    const hub = createHub()
    const registry = hub.connections
    const peer = await connect(new Echo(), '/', { hub, answerClose: false })
    const done = registry.shutdown({ timeout: 50 })
    const refused = await connect(new Echo(), '/', { hub }).catch((err: unknown) => err)
    expect(refused).toBeInstanceOf(UpgradeRejectedError)
    const { response } = refused as UpgradeRejectedError
    expect(response.status).toBe(503)
    expect(response.headers.get('sec-websocket-version')).toBe('13')
    expect(await response.json()).toEqual({ error: 'Service Unavailable' })
    await done
    expect((await peer.closed).code).toBe(1001)
  })

  // Issue 11, defect 2: an invalid code or reason left one unhandled rejection per connection.
  it.each([
    [{ code: 1006 }, /Invalid close code 1006/],
    [{ code: 999 }, /Invalid close code 999/],
    [{ reason: 'x'.repeat(124) }, /124 UTF-8 bytes/],
    [{ timeout: -1 }, /Invalid shutdown timeout/],
  ])('rejects %o before anything is sent, refused or stopped', async (options, message) => {
    const hub = createHub()
    const registry = hub.connections
    const peer = await connect(new Echo(), '/', { hub })
    const stop = vi.fn()
    await expect(registry.shutdown(options, stop)).rejects.toThrow(message)
    await expect(registry.shutdown(options, stop)).rejects.toBeInstanceOf(RangeError)
    expect(stop).not.toHaveBeenCalled()
    expect(registry.accepting).toBe(true)
    expect(peer.closeFrames).toEqual([])
    peer.send('still here')
    expect(await peer.read()).toEqual({ type: 'text', data: 'still here' })
    // A valid shutdown still works afterwards.
    await registry.shutdown({ timeout: 1000 })
    expect((await peer.closed).code).toBe(1001)
  })

  it('tears down a silent peer at the deadline, and resolves by it', async () => {
    const hub = createHub()
    const registry = hub.connections
    const peer = await connect(new Echo(), '/', {
      hub,
      answerClose: false,
      upgrade: { closeHandshakeTimeout: 60_000 },
    })
    await tick()
    const started = Date.now()
    await registry.shutdown({ timeout: 150 })
    const took = Date.now() - started
    expect(took).toBeGreaterThanOrEqual(140)
    expect(took).toBeLessThan(1000)
    expect(peer.terminated).toBe(true)
    expect(registry.size).toBe(0)
  })

  it('resolves by its deadline even when serve ignores its signal', async () => {
    const hub = createHub()
    const registry = hub.connections
    const peer = await connect(new Stubborn(), '/', { hub })
    await tick()
    const outcome = await race(registry.shutdown({ timeout: 200 }), 1500)
    expect(outcome).toBeUndefined()
    // The peer answered: the handshake completed although serve never returned.
    expect(await peer.closed).toEqual({
      code: 1001,
      reason: 'Server shutting down',
      wasClean: true,
    })
  })

  // Issue 11, defect 1: a close never completed while inbound was paused.
  it('resumes a paused (flooding) peer so that its close answer is read', async () => {
    const hub = createHub()
    const registry = hub.connections
    const peer = await connect(new Holder(), '/', {
      hub,
      upgrade: { maxInboundBuffer: 4096, maxMessageSize: 1024, closeHandshakeTimeout: 60_000 },
    })
    await tick()
    for (let i = 0; i < 200; i++) peer.send(new Uint8Array(512))
    await tick()
    expect(peer.pendingBytes).toBeGreaterThan(0)
    const started = Date.now()
    const outcome = await race(registry.shutdown({ timeout: 5000 }), 6000)
    expect(outcome).toBeUndefined()
    expect(Date.now() - started).toBeLessThan(1000)
    expect(await peer.closed).toEqual({
      code: 1001,
      reason: 'Server shutting down',
      wasClean: true,
    })
    expect(peer.terminated).toBe(false)
  })

  it('closes a connection whose upgrade completes during the shutdown', async () => {
    const hub = createHub()
    const registry = hub.connections
    let release: () => void = () => {}
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    const app = new Hono().get(
      '/',
      async (_c, next) => {
        await next()
      },
      upgrade({
        async upgradeHeaders() {
          await gate
          return {}
        },
        async serve(conn) {
          for await (const _ of conn) {
          }
        },
      }),
    )
    // The upgrade is past the 503 check and waits in a hook while the shutdown starts.
    const connecting = connect(app, '/', { hub })
    await tick()
    const done = registry.shutdown({ timeout: 2000 })
    release()
    const peer: TestPeer = await connecting
    await done
    expect(await peer.closed).toEqual({
      code: 1001,
      reason: 'Server shutting down',
      wasClean: true,
    })
  })

  it('waits for stopListening under the same deadline', async () => {
    const hub = createHub()
    const registry = hub.connections
    const stop = vi.fn(() => new Promise<void>(() => {}))
    const outcome = await race(registry.shutdown({ timeout: 100 }, stop), 1500)
    expect(outcome).toBeUndefined()
    expect(stop).toHaveBeenCalledTimes(1)
  })

  it('acts once however often it is called', async () => {
    const hub = createHub()
    const registry = hub.connections
    const peer = await connect(new Echo(), '/', { hub })
    await tick()
    const first = registry.shutdown({ code: 1012, reason: 'restarting' })
    const second = registry.shutdown({ code: 1001 })
    expect(second).toBe(first)
    await first
    expect(peer.closeFrames).toEqual([{ code: 1012, reason: 'restarting' }])
  })
})
