/**
 * The review of recovery under the publish bound (d0a38ca): what the gap notice owed when a
 * recovery goes live does to a subscriber with `slowSubscriber: 'close'`.
 */
import { Hono } from 'hono'
import { describe, expect, it } from 'vitest'
import { createHub } from '../src/adapter.js'
import { type Conn, upgrade } from '../src/index.js'
import { connect } from '../src/testing.js'
import { frameAsJson } from './framed.js'

const quiet = { error: () => {} }

describe("a recovery's gap notice to a subscriber past the bound, with slowSubscriber 'close'", () => {
  it('closes it with 1008, as every other delivery past the bound does', async () => {
    const hub = createHub({ logger: quiet })
    hub.topics.useHistory({ history: () => ({ size: 100, ttl: 60_000 }), frame: frameAsJson })
    for (let i = 1; i <= 5; i++) hub.topics.publish('t', `m${i}`)
    const epoch = (await hub.topics.position('t'))?.epoch as string
    const conns: Conn[] = []
    const app = new Hono()
    app.get(
      '/',
      upgrade(
        {
          async serve(conn) {
            conns.push(conn)
            for await (const msg of conn) {
              // The socket is past the bound before the recovery's delivery.
              void conn.send('x'.repeat(4096))
              await conn.subscribe('t', { since: JSON.parse(msg.data as string) })
            }
          },
        },
        { logger: quiet, maxPublishBuffer: 1024, slowSubscriber: 'close' },
      ),
    )
    const peer = await connect(app, '/', { hub })
    peer.stopReading()
    // Ahead of anything the history confirms: the recovery owes a gap notice and nothing else.
    peer.send(JSON.stringify({ epoch, offset: 999 }))
    await expect.poll(() => conns[0]?.state).not.toBe('open')
    expect((await peer.closeFrame).code).toBe(1008)
  })
})
