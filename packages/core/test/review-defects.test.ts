// The core's side of the defects found in review (issue 11), each pinned by a test that failed
// before its fix. The runtimes' side of each is in the conformance suite.
import { Hono } from 'hono'
import { describe, expect, it, vi } from 'vitest'
import {
  CloseError,
  type Conn,
  type Controller,
  isCloseError,
  isSameOrigin,
  Upgrader,
  upgrade,
} from '../src/index.js'
import { connect, UpgradeRejectedError } from '../src/testing.js'

const tick = () => new Promise((resolve) => setTimeout(resolve, 0))

function race<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  return Promise.race([
    promise,
    new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), ms)),
  ])
}

describe('1. a close completes while inbound is paused', () => {
  const limits = { maxInboundBuffer: 4096, maxMessageSize: 1024, closeHandshakeTimeout: 60_000 }

  it('conn.close() on a flooding peer ends with the peer answer, not the timeout', async () => {
    let closeTook = -1
    const peer = await connect(
      {
        async serve(conn: Conn) {
          await new Promise((resolve) => setTimeout(resolve, 20))
          const started = Date.now()
          await conn.close(4000, 'enough')
          closeTook = Date.now() - started
        },
      },
      '/',
      { upgrade: limits },
    )
    for (let i = 0; i < 100; i++) peer.send(new Uint8Array(512))
    const closed = await race(peer.closed, 3000)
    expect(closed).toEqual({ code: 4000, reason: 'enough', wasClean: true })
    expect(closeTook).toBeGreaterThanOrEqual(0)
    expect(closeTook).toBeLessThan(1000)
  })

  it('serve returning on a paused socket still completes the handshake', async () => {
    const peer = await connect(
      {
        async serve() {
          await new Promise((resolve) => setTimeout(resolve, 20))
        },
      },
      '/',
      { upgrade: limits },
    )
    for (let i = 0; i < 100; i++) peer.send(new Uint8Array(512))
    expect(await race(peer.closed, 3000)).toMatchObject({ code: 1000, wasClean: true })
    expect(peer.terminated).toBe(false)
  })

  it('the test kit holds a close frame behind unread data while paused, as a network does', async () => {
    let conn: Conn | undefined
    const peer = await connect(
      {
        async serve(c: Conn) {
          conn = c
          await new Promise(() => {})
        },
      },
      '/',
      { upgrade: limits },
    )
    for (let i = 0; i < 100; i++) peer.send(new Uint8Array(512))
    peer.close(1000)
    await tick()
    await tick()
    // Paused: the peer's close frame has not reached the server.
    expect(conn?.state).toBe('open')
    expect(peer.pendingBytes).toBeGreaterThan(0)
  })
})

describe('4. a throw that cannot be made a string, and an onError that never settles', () => {
  const throwers: [string, () => unknown][] = [
    ['Object.create(null)', () => Object.create(null)],
    [
      'an error whose message getter throws',
      () => {
        const err = new Error('x')
        Object.defineProperty(err, 'message', {
          get() {
            throw new Error('no message for you')
          },
        })
        return err
      },
    ],
  ]

  for (const [name, make] of throwers) {
    it(`still closes with 1011 after a throw of ${name}, debug on and off`, async () => {
      for (const debug of [false, true]) {
        const logger = { error: vi.fn() }
        const peer = await connect(
          {
            serve() {
              throw make()
            },
          },
          '/',
          { upgrade: { debug, logger } },
        )
        const closed = await race(peer.closed, 2000)
        expect(closed).toMatchObject({ code: 1011, wasClean: true })
        expect(logger.error).toHaveBeenCalled()
      }
    })
  }

  it('bounds an onError that never settles: the close goes out and the hang is logged', async () => {
    const logger = { error: vi.fn() }
    const peer = await connect(
      {
        serve() {
          throw new Error('boom')
        },
        onError: () => new Promise<void>(() => {}),
      },
      '/',
      { upgrade: { logger, closeHandshakeTimeout: 100 } },
    )
    expect(await race(peer.closed, 2000)).toMatchObject({ code: 1011 })
    expect(String(logger.error.mock.calls.flat())).toMatch(/onError did not settle within 100 ms/)
  })
})

describe('8. options checked against each other', () => {
  it('refuses maxInboundBuffer below one message, saying which to change', () => {
    expect(
      () => new Upgrader({ serve() {} }, { maxInboundBuffer: 1000, maxMessageSize: 4096 }),
    ).toThrow(/raise maxInboundBuffer to at least 4160, or lower maxMessageSize/)
    expect(
      () => new Upgrader({ serve() {} }, { maxInboundBuffer: 4160, maxMessageSize: 4096 }),
    ).not.toThrow()
  })

  it('a single legal message fits the bound and is read', async () => {
    const peer = await connect(
      {
        async serve(conn: Conn) {
          await new Promise((resolve) => setTimeout(resolve, 10))
          const msg = await conn.read()
          await conn.send(String(msg.data.length))
        },
      },
      '/',
      { upgrade: { maxMessageSize: 4096, maxInboundBuffer: 4160 } },
    )
    peer.send(new Uint8Array(4096))
    expect(await peer.read()).toEqual({ type: 'text', data: '4096' })
  })
})

describe('9. isCloseError follows cause, as errors.As does', () => {
  it('counts a wrapped normal close', () => {
    const normal = new CloseError(1000, '', true)
    expect(isCloseError(new Error('read failed', { cause: normal }))).toBe(true)
    expect(
      isCloseError(
        new Error('a', { cause: new Error('b', { cause: new CloseError(1001, '', true) }) }),
      ),
    ).toBe(true)
    expect(isCloseError(new Error('read failed', { cause: new CloseError(1006, '', false) }))).toBe(
      false,
    )
  })

  it('stops on cycles and on deep chains', () => {
    const a: { cause?: unknown } = {}
    a.cause = a
    expect(isCloseError(a)).toBe(false)
    let deep: unknown = new CloseError(1000, '', true)
    for (let i = 0; i < 20; i++) deep = new Error(`level ${i}`, { cause: deep })
    expect(isCloseError(deep)).toBe(false)
  })

  it('does not call onError for a wrapped normal disconnect', async () => {
    const onError = vi.fn()
    const peer = await connect({
      async serve(conn: Conn) {
        try {
          await conn.read()
        } catch (err) {
          throw new Error('read failed', { cause: err })
        }
      },
      onError,
    })
    peer.close(1000)
    await peer.closed
    await tick()
    expect(onError).not.toHaveBeenCalled()
  })
})

describe('10. the default origin check and default ports', () => {
  const request = (origin: string, host: string) =>
    new Request(`http://${host}/ws`, { headers: { Origin: origin, Host: host } })

  it.each([
    ['http://example.com:80', 'example.com:80'],
    ['http://example.com', 'example.com:80'],
    ['http://example.com:80', 'example.com'],
    ['https://example.com', 'example.com:443'],
    ['https://example.com:443', 'example.com'],
    ['http://EXAMPLE.com:8080', 'example.com:8080'],
  ])('accepts Origin %s with Host %s', (origin, host) => {
    expect(isSameOrigin(request(origin, host))).toBe(true)
  })

  it.each([
    ['http://example.com:8080', 'example.com'],
    ['https://example.com', 'example.com:80'],
    ['http://evil.example', 'example.com'],
    ['null', 'example.com'],
  ])('refuses Origin %s with Host %s', (origin, host) => {
    expect(isSameOrigin(request(origin, host))).toBe(false)
  })
})

describe('11. handshake headers from upgradeHeaders', () => {
  it.each(['Sec-WebSocket-Protocol', 'Sec-WebSocket-Extensions'])(
    'refuses %s with a 500 and a log line that says what to do',
    async (name) => {
      const logger = { error: vi.fn() }
      const err = await connect(
        {
          upgradeHeaders: () => ({ [name]: 'chat' }),
          serve() {},
        },
        '/',
        { upgrade: { logger }, protocols: ['chat'] },
      ).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(UpgradeRejectedError)
      expect((err as UpgradeRejectedError).response.status).toBe(500)
      expect(String(logger.error.mock.calls.flat())).toMatch(/subprotocols/)
    },
  )
})

describe('12. the test kit', () => {
  it('rejects a second pending peer.read() instead of dropping the first', async () => {
    const peer = await connect({
      async serve(conn: Conn) {
        await conn.read()
        await conn.send('one')
      },
    })
    const first = peer.read()
    await expect(peer.read()).rejects.toThrow(/Only one peer.read\(\)/)
    peer.send('go')
    expect(await first).toEqual({ type: 'text', data: 'one' })
  })

  it('takes upgrader options for a bare controller', async () => {
    const peer = await connect(
      {
        async serve(conn: Conn) {
          await conn.send(String(conn.getCloseHandshakeTimeout()))
        },
      },
      '/',
      { upgrade: { closeHandshakeTimeout: 1234 } },
    )
    expect(await peer.read()).toEqual({ type: 'text', data: '1234' })
  })

  it('opens no connection when middleware rewrites the status after the handler', async () => {
    const serve = vi.fn()
    const app = new Hono().get(
      '/',
      async (c, next) => {
        await next()
        c.res = new Response('no', { status: 500 })
      },
      upgrade({ serve }),
    )
    const err = await connect(app).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(UpgradeRejectedError)
    expect((err as UpgradeRejectedError).response.status).toBe(500)
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(serve).not.toHaveBeenCalled()
  })
})

describe('14. a vanished peer is not a controller failure', () => {
  class Echo implements Controller {
    async serve(conn: Conn) {
      for await (const msg of conn) await conn.send(msg.data)
    }
  }

  it('is not logged by default; onError still receives it', async () => {
    const logger = { error: vi.fn() }
    const peer = await connect(new Echo(), '/', { upgrade: { logger } })
    peer.vanish()
    await peer.closed
    await new Promise((resolve) => setTimeout(resolve, 10))
    expect(logger.error).not.toHaveBeenCalled()

    const onError = vi.fn()
    const other = await connect({ serve: (conn: Conn) => new Echo().serve(conn), onError }, '/', {
      upgrade: { logger },
    })
    other.vanish()
    await other.closed
    await new Promise((resolve) => setTimeout(resolve, 10))
    expect(onError).toHaveBeenCalledWith(expect.anything(), expect.objectContaining({ code: 1006 }))
  })

  it('is logged with logAbnormalCloses', async () => {
    const logger = { error: vi.fn() }
    const peer = await connect(new Echo(), '/', { upgrade: { logger, logAbnormalCloses: true } })
    peer.vanish()
    await peer.closed
    await new Promise((resolve) => setTimeout(resolve, 10))
    expect(logger.error).toHaveBeenCalledTimes(1)
  })

  it('a protocol fault is still logged', async () => {
    const logger = { error: vi.fn() }
    const peer = await connect(new Echo(), '/', { upgrade: { logger } })
    peer.fault(1007, 'invalid UTF-8')
    await peer.closed
    await new Promise((resolve) => setTimeout(resolve, 10))
    expect(logger.error).toHaveBeenCalledTimes(1)
  })
})

describe('15. the controller starts after the HTTP handler returned', () => {
  it('serve has not run when the middleware resumes after next()', async () => {
    const order: string[] = []
    const app = new Hono().get(
      '/',
      async (_c, next) => {
        await next()
        order.push('middleware resumed')
      },
      upgrade({
        serve() {
          order.push('serve')
        },
      }),
    )
    const peer = await connect(app)
    await peer.closed
    expect(order).toEqual(['middleware resumed', 'serve'])
  })

  it('a close before the first await is seen at once, with its code', async () => {
    let closeTook = -1
    const peer = await connect({
      async serve(conn: Conn) {
        const started = Date.now()
        await conn.close(4001, 'unauthorised')
        closeTook = Date.now() - started
      },
    })
    expect(await race(peer.closed, 2000)).toEqual({
      code: 4001,
      reason: 'unauthorised',
      wasClean: true,
    })
    await tick()
    expect(closeTook).toBeGreaterThanOrEqual(0)
    expect(closeTook).toBeLessThan(500)
  })
})

describe('13. a missing adapter', () => {
  const handshake = {
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
  }

  it('answers a generic 500, and names the package to import in the body under debug', async () => {
    const logger = { error: vi.fn() }
    for (const debug of [false, true]) {
      const app = new Hono().get('/', upgrade({ serve() {} }, { debug, logger }))
      const response = await app.request('http://localhost/', { headers: handshake })
      expect(response.status).toBe(500)
      const body = (await response.json()) as { error: string }
      if (debug) expect(body.error).toMatch(/@handshake\/node/)
      else expect(body).toEqual({ error: 'Internal Server Error' })
    }
    expect(String(logger.error.mock.calls.flat())).toMatch(/@handshake\/node/)
  })
})
