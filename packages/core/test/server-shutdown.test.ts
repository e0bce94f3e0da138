/**
 * A server's shutdown lets go of its hub's backplane on every runtime (issue 18 #21): the
 * backplane's connections to its engine would otherwise keep the process alive after the last
 * WebSocket closed. The glue is `hubServer`, shared by Node, Bun and Deno.
 */
import { describe, expect, it, vi } from 'vitest'
import { type Backplane, createHub, hubServer } from '../src/adapter.js'
import type { ShutdownOptions } from '../src/index.js'

function recording(): Backplane & { calls: string[] } {
  const calls: string[] = []
  return {
    calls,
    start() {},
    async subscribe() {},
    async unsubscribe() {},
    publish() {},
    async close() {
      calls.push('close')
    },
  }
}

const address = { hostname: '127.0.0.1', port: 1 }

describe("a server's shutdown and its hub's backplane", () => {
  it('closes the backplane once the connections are closed, once however often it is called', async () => {
    const hub = createHub()
    const backplane = recording()
    await hub.topics.useBackplane(backplane)
    const order: string[] = backplane.calls
    const server = hubServer(
      hub,
      {},
      address,
      async () => void order.push('stop'),
      () => {},
    )
    await Promise.all([server.shutdown(), server.shutdown()])
    expect(order).toEqual(['stop', 'close'])
  })

  it('keeps the backplane when the shutdown is refused (invalid options), so it can be made again', async () => {
    const hub = createHub()
    const backplane = recording()
    await hub.topics.useBackplane(backplane)
    let calls = 0
    const stop = async () => {
      calls += 1
      if (calls === 1) throw new RangeError('Invalid close code')
    }
    const server = hubServer(hub, {}, address, stop, () => {})
    await expect(server.shutdown({ code: 1005 })).rejects.toThrow(RangeError)
    expect(backplane.calls).toEqual([])
    await server.shutdown()
    expect(backplane.calls).toEqual(['close'])
  })
})

describe("a server's shutdown when its backplane fails to close", () => {
  // It failed before: the first call rejected with the backplane's error, and that rejection
  // let the next call run the whole stop again.
  it('runs once, resolves, and logs the failure instead of rejecting', async () => {
    const hub = createHub()
    const backplane = recording()
    backplane.close = async () => {
      backplane.calls.push('close')
      throw new Error('engine gone')
    }
    await hub.topics.useBackplane(backplane)
    let stops = 0
    const stop = async (options?: ShutdownOptions) => {
      await hub.connections.shutdown(options)
      stops += 1
    }
    const server = hubServer(hub, {}, address, stop, () => {})
    const logged = vi.spyOn(console, 'error').mockImplementation(() => {})
    try {
      await expect(server.shutdown()).resolves.toBeUndefined()
      await expect(Promise.all([server.shutdown(), server.shutdown()])).resolves.toBeDefined()
      expect(stops).toBe(1)
      expect(backplane.calls).toEqual(['close'])
      expect(logged).toHaveBeenCalledTimes(1)
      expect(String(logged.mock.calls[0]?.[0])).toMatch(/backplane failed to close/)
    } finally {
      logged.mockRestore()
    }
  })

  it('resolves when the runtime fails to stop once its connections are closed, and still closes the backplane', async () => {
    const hub = createHub()
    const backplane = recording()
    await hub.topics.useBackplane(backplane)
    const stop = async (options?: ShutdownOptions) => {
      await hub.connections.shutdown(options)
      throw new Error('the listener was already gone')
    }
    const server = hubServer(hub, {}, address, stop, () => {})
    const logged = vi.spyOn(console, 'error').mockImplementation(() => {})
    try {
      await expect(server.shutdown()).resolves.toBeUndefined()
      expect(backplane.calls).toEqual(['close'])
      expect(String(logged.mock.calls[0]?.[0])).toMatch(/failed to stop cleanly/)
    } finally {
      logged.mockRestore()
    }
  })
})
