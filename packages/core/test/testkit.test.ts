import { Hono } from 'hono'
import { describe, expect, it, vi } from 'vitest'
import {
  CloseError,
  type Conn,
  type Controller,
  NormalClosureMessage,
  Upgrader,
  upgrade,
} from '../src/index.js'
import { connect, UpgradeRejectedError } from '../src/testing.js'

const quiet = { error: vi.fn() }

class Echo implements Controller {
  async serve(conn: Conn) {
    for await (const msg of conn) await conn.send(msg.data)
  }
}

describe('the test kit', () => {
  it('echoes text and binary through a bare controller', async () => {
    const peer = await connect(new Echo(), '/ws')
    expect(peer.response.status).toBe(101)
    peer.send('hello')
    peer.send(new Uint8Array([1, 2, 3]))
    expect(await peer.read()).toEqual({ type: 'text', data: 'hello' })
    expect(await peer.read()).toEqual({ type: 'binary', data: new Uint8Array([1, 2, 3]) })
    peer.close(1000, 'bye')
    expect(await peer.closed).toEqual({ code: 1000, reason: 'bye', wasClean: true })
  })

  it('rejects a refused upgrade with the whole response', async () => {
    const app = new Hono().get('/ws', upgrade(new Echo()))
    const err = await connect(app, '/ws', { headers: { Origin: 'https://evil.example' } }).catch(
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(UpgradeRejectedError)
    const { response } = err as UpgradeRejectedError
    expect(response.status).toBe(403)
    expect(response.headers.get('sec-websocket-version')).toBe('13')
    expect(await response.json()).toEqual({ error: 'Forbidden' })
  })

  it('closes 1000 with the normal message when serve returns', async () => {
    const peer = await connect({ serve() {} })
    expect(await peer.closed).toEqual({ code: 1000, reason: NormalClosureMessage, wasClean: true })
  })

  it('reports a throw and closes 1011', async () => {
    const logger = { error: vi.fn() }
    const app = new Hono().get(
      '/',
      upgrade(
        {
          serve() {
            throw new Error('boom')
          },
        },
        { logger },
      ),
    )
    const peer = await connect(app)
    expect(await peer.closed).toEqual({
      code: 1011,
      reason: 'Internal server error',
      wasClean: true,
    })
    expect(logger.error).toHaveBeenCalledOnce()
  })

  it('tears down when the peer never answers the close frame', async () => {
    let closedAfter = 0
    const app = new Hono().get(
      '/',
      upgrade(
        {
          async serve(conn: Conn) {
            const started = Date.now()
            await conn.close(4000, 'go')
            closedAfter = Date.now() - started
            await expect(conn.read()).rejects.toMatchObject({ code: 1006, wasClean: false })
          },
        },
        { closeHandshakeTimeout: 50, logger: quiet },
      ),
    )
    const peer = await connect(app, '/', { answerClose: false })
    expect(await peer.closeFrame).toEqual({ code: 4000, reason: 'go' })
    expect(await peer.closed).toEqual({ code: 4000, reason: 'go', wasClean: false })
    expect(peer.terminated).toBe(true)
    await vi.waitFor(() => expect(closedAfter).toBeGreaterThanOrEqual(45))
  })

  it('gives serve the peer close code, 1005 included', async () => {
    const seen: unknown[] = []
    const controller: Controller = {
      async serve(conn) {
        await conn.read().catch((err: unknown) => seen.push(err))
      },
    }
    const peer = await connect(controller)
    peer.close()
    expect(await peer.closed).toMatchObject({ code: 1005, wasClean: true })
    await vi.waitFor(() => expect(seen).toHaveLength(1))
    expect(seen[0]).toBeInstanceOf(CloseError)
    expect(seen[0]).toMatchObject({ code: 1005 })
  })

  it('holds sends while the peer does not read', async () => {
    let sent = 0
    const upgrader = new Upgrader(
      {
        async serve(conn: Conn) {
          await conn.read()
          for (let i = 0; i < 10; i++) {
            await conn.send(new Uint8Array(400))
            sent++
          }
        },
      },
      { sendHighWaterMark: 1000 },
    )
    const peer = await connect(new Hono().get('/', upgrader.handler()))
    peer.stopReading()
    peer.send('go')
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(sent).toBe(2)
    peer.startReading()
    expect(await peer.closed).toMatchObject({ code: 1000 })
    expect(sent).toBe(10)
  })

  it('pings, and aborts the signal when the peer leaves', async () => {
    let signal: AbortSignal | undefined
    const peer = await connect({
      async serve(conn: Conn) {
        signal = conn.signal
        expect(conn.canPing).toBe(true)
        await conn.ping()
        await conn.send('pong seen')
        await conn.read()
      },
    })
    expect(await peer.read()).toEqual({ type: 'text', data: 'pong seen' })
    expect(peer.pings).toBe(1)
    expect(signal?.aborted).toBe(false)
    peer.vanish()
    await vi.waitFor(() => expect(signal?.aborted).toBe(true))
    expect(signal?.reason).toMatchObject({ code: 1006 })
  })

  it('sends one close frame for concurrent close() calls', async () => {
    const results: unknown[] = []
    const peer = await connect({
      async serve(conn: Conn) {
        const first = conn.close(4001, 'first')
        const second = conn.close(4002, 'second')
        await Promise.all([first, second])
        results.push(conn.state, await conn.close(1000).then(() => 'again'))
      },
    })
    expect(await peer.closeFrame).toEqual({ code: 4001, reason: 'first' })
    expect(await peer.closed).toMatchObject({ code: 4001, wasClean: true })
    await vi.waitFor(() => expect(results).toEqual(['closed', 'again']))
  })

  it('cuts a connection: what is in flight either way is lost, the peer keeps what it had, the server sees 1006', async () => {
    let ended: CloseError | undefined
    const got: string[] = []
    let conn: Conn | undefined
    const peer = await connect({
      async serve(c: Conn) {
        conn = c
        await c.send('before')
        await c.read()
        await c.send('in flight')
        try {
          for await (const msg of c) got.push(msg.data as string)
        } catch (err) {
          ended = err as CloseError
        }
      },
    })
    expect(await peer.read()).toEqual({ type: 'text', data: 'before' })
    peer.stopReading()
    peer.send('go')
    await vi.waitFor(() => expect(conn?.bufferedAmount).toBeGreaterThan(0))
    peer.send('never read')
    peer.cut()
    void conn?.send('after the cut').catch(() => {})
    peer.send('after the cut')
    expect(await peer.closed).toEqual({ code: 1006, reason: '', wasClean: false })
    await expect(peer.read()).rejects.toMatchObject({ code: 1006 })
    await vi.waitFor(() => expect(ended).toMatchObject({ code: 1006, wasClean: false }))
    expect(got).toEqual([])
    expect(peer.closeFrames).toEqual([])
  })
})
