/**
 * The Worker the tests run in workerd: the conformance app, plus a few routes for what only
 * Workers has to prove (work that goes on after the client left, the close-handshake timeout).
 * @module
 */
import '../src/index.js'
import { createConformanceApp } from '@handshake/conformance/app'
import { type Conn, upgrade } from '@handshake/core'
import { FLOOD_MESSAGE_BYTES, FLOOD_MESSAGES } from './shared.js'

/** What `/workers/*` routes saw, by `?id=`. */
interface WorkersRecord {
  /** How `serve`'s read loop ended: the CloseError's code, or the thrown message. */
  endedWith?: number | string
  /** True once `serve` finished the work it does after the connection ended. */
  finishedAfterClose: boolean
  /** How long `conn.close()` took, in milliseconds. */
  closeMs?: number
  /** `conn.state` once `close()` resolved. */
  stateAfterClose?: string
  /** On `/workers/flood`: sends that resolved, and the largest `conn.bufferedAmount` seen. */
  flood?: { resolved: number; maxBufferedAmount: number }
}

const records = new Map<string, WorkersRecord>()
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

function recordFor(id: string | undefined): WorkersRecord {
  const key = id ?? 'anonymous'
  let record = records.get(key)
  if (!record) {
    record = { finishedAfterClose: false }
    records.set(key, record)
  }
  return record
}

const app = createConformanceApp()

// Sleeps first, so the peer leaves while a timer is pending, then reads until the end and keeps
// working on timers: the request must stay alive after the socket ended for all of it.
app.get('/workers/after-close', (c, next) => {
  const record = recordFor(c.req.query('id'))
  return upgrade({
    async serve(conn: Conn) {
      await sleep(500)
      try {
        for (;;) await conn.send((await conn.read()).data)
      } catch (err) {
        record.endedWith = (err as { code?: number }).code ?? String(err)
      }
      await sleep(100)
      await sleep(100)
      record.finishedAfterClose = true
    },
  })(c, next)
})

// Closes first and times the handshake (timeout `?timeout=`, 300 ms by default): the peer
// decides whether it answers.
app.get('/workers/close-first', (c, next) => {
  const record = recordFor(c.req.query('id'))
  return upgrade(
    {
      async serve(conn: Conn) {
        await conn.send('closing')
        const started = Date.now()
        await conn.close(4000, 'server is done')
        record.closeMs = Date.now() - started
        record.stateAfterClose = conn.state
      },
    },
    { closeHandshakeTimeout: Number(c.req.query('timeout') ?? 300) },
  )(c, next)
})

// Sends far more than the high-water mark to a peer that reads nothing.
app.get('/workers/flood', (c, next) => {
  const record = recordFor(c.req.query('id'))
  return upgrade({
    async serve(conn: Conn) {
      const flood = { resolved: 0, maxBufferedAmount: 0 }
      record.flood = flood
      const chunk = new Uint8Array(FLOOD_MESSAGE_BYTES).fill(0x61)
      for (let i = 0; i < FLOOD_MESSAGES; i++) {
        await conn.send(chunk)
        flood.resolved++
        flood.maxBufferedAmount = Math.max(flood.maxBufferedAmount, conn.bufferedAmount)
      }
      for await (const _ of conn) {
        // Wait for the peer to leave.
      }
    },
  })(c, next)
})

app.get('/workers/record/:id', (c) => {
  const record = records.get(c.req.param('id'))
  return record ? c.json(record) : c.json({ error: 'Not Found' }, 404)
})

// Only the default export: workerd takes every named export of the main module as an entrypoint.
// An app that wants permessage-deflate after all: it names it on the 101, after the upgrade.
const echo = upgrade({
  async serve(conn: Conn) {
    for await (const message of conn) await conn.send(message.data)
  },
})
app.get(
  '/workers/deflate',
  async (c, next) => {
    await next()
    c.res.headers.set('Sec-WebSocket-Extensions', 'permessage-deflate')
  },
  echo,
)

export default app
