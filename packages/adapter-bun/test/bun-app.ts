/**
 * Routes for the Bun-only tests, mounted under `/bun` beside the conformance app.
 * @module
 */
import { type CloseError, type Conn, getHub, upgrade } from '@handshake/core'
import type { Server } from 'bun'
import { Hono } from 'hono'

/** What `/bun/flood` saw, as `GET /bun/flood-stats/:id` returns it. */
export interface FloodStats {
  sent: number
  maxBufferedAmount: number
  error?: string
}

const stats = new Map<string, FloodStats>()

/** One send of `/bun/drop`: its outcome, and whether the connection ended inside it. */
export interface SendOutcome {
  endedHere: boolean
  sent: boolean
  code?: number
  reason?: string
}

const drops = new Map<string, SendOutcome[]>()

/** The connections of `/bun/hold`, by id, for `GET /bun/buffered/:id`. */
const held = new Map<string, Conn>()

/** The Bun-only test routes. */
export function createBunTestApp(): Hono {
  const app = new Hono()
  // Sends `n` binary messages of `size` bytes, awaiting each send, and records the most bytes
  // Bun held unsent: with a peer that stops reading, that shows whether send() waits.
  app.get('/flood', (c) => {
    const id = c.req.query('id') ?? 'flood'
    const count = Number(c.req.query('n') ?? '100')
    const size = Number(c.req.query('size') ?? '65536')
    const record: FloodStats = { sent: 0, maxBufferedAmount: 0 }
    stats.set(id, record)
    return upgrade({
      async serve(conn: Conn) {
        try {
          for (let i = 0; i < count; i++) {
            await conn.send(new Uint8Array(size).fill(i & 0xff))
            record.sent++
            record.maxBufferedAmount = Math.max(record.maxBufferedAmount, conn.bufferedAmount)
          }
          await conn.send('done')
          for await (const _ of conn) {
            // Wait for the peer to close.
          }
        } catch (err) {
          record.error = err instanceof Error ? err.message : String(err)
        }
      },
    })(c, async () => {})
  })
  // Who holds a topic: Bun's own tree, and the core's count of local subscribers.
  app.get('/native-subscribers/:topic', (c) => {
    const topic = c.req.param('topic')
    const server = c.env as Server<unknown>
    return c.json({
      native: server.subscriberCount(topic),
      handshake: getHub(c).topics.subscribers(topic),
    })
  })
  // Sends `n` messages of `size` bytes without awaiting them, to a peer that reads nothing, and
  // records each outcome and whether the connection ended inside that very send() (Bun dropped
  // it past backpressureLimit): that send must reject.
  app.get('/drop', (c) => {
    const id = c.req.query('id') ?? 'drop'
    const count = Number(c.req.query('n') ?? '512')
    const size = Number(c.req.query('size') ?? '65536')
    return upgrade({
      async serve(conn: Conn) {
        const outcomes: Promise<SendOutcome>[] = []
        for (let i = 0; i < count && conn.state === 'open'; i++) {
          const sending = conn.send(new Uint8Array(size).fill(i & 0xff))
          const endedHere = conn.state !== 'open'
          outcomes.push(
            sending.then(
              () => ({ endedHere, sent: true }),
              (err: CloseError) => ({ endedHere, sent: false, code: err.code, reason: err.reason }),
            ),
          )
        }
        drops.set(id, await Promise.all(outcomes))
      },
    })(c, async () => {})
  })
  // A route whose maxPublishBuffer (16 MiB) is not below the server's backpressureLimit: Bun
  // would drop published messages before the core closed the subscriber (issue 18 #5).
  app.get(
    '/publish-bound-too-high',
    upgrade(
      {
        async serve(conn: Conn) {
          conn.subscribe('publish-bound')
          for await (const _ of conn) {
            // Never closes by itself.
          }
        },
      },
      { maxPublishBuffer: 16 * 1024 * 1024 },
    ),
  )
  // A connection that only reads, so the test can ask how many bytes Bun holds unsent for it
  // (pongs to a peer that pings and never reads).
  app.get('/hold', (c) => {
    const id = c.req.query('id') ?? 'hold'
    return upgrade({
      async serve(conn: Conn) {
        held.set(id, conn)
        for await (const _ of conn) {
          // Pings are answered by Bun itself.
        }
      },
    })(c, async () => {})
  })
  // Sends what Bun's console.log would print for the connection: `Bun.inspect`, which looks up
  // the same registered symbol.
  app.get(
    '/inspect',
    upgrade({
      async serve(conn: Conn) {
        await conn.subscribe('inspected')
        await conn.send(Bun.inspect(conn))
        for await (const _ of conn) {
          // Until the peer closes.
        }
      },
    }),
  )
  app.get('/buffered/:id', (c) => {
    const conn = held.get(c.req.param('id'))
    return conn
      ? c.json({ bufferedAmount: conn.bufferedAmount, state: conn.state })
      : c.json({ error: 'Not Found' }, 404)
  })
  app.get('/drop-outcomes/:id', (c) => {
    const outcomes = drops.get(c.req.param('id'))
    return outcomes ? c.json(outcomes) : c.json({ error: 'Not Found' }, 404)
  })
  app.get('/flood-stats/:id', (c) => {
    const record = stats.get(c.req.param('id'))
    return record ? c.json(record) : c.json({ error: 'Not Found' }, 404)
  })
  return app
}
