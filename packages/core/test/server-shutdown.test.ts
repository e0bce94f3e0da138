/**
 * A server's shutdown lets go of its hub's backplane on every runtime (issue 18 #21): the
 * backplane's connections to its engine would otherwise keep the process alive after the last
 * WebSocket closed. The glue is `hubServer`, shared by Node, Bun and Deno.
 */
import { describe, expect, it } from 'vitest'
import { type Backplane, createHub, hubServer } from '../src/adapter.js'

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
