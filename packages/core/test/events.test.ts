/**
 * Event controllers (`open`, `message`, `close`), through the test kit: the contract written on
 * `EventController`, each rule a test.
 */
import { Hono } from 'hono'
import { describe, expect, it, vi } from 'vitest'
import {
  ADAPTER,
  type Adapter,
  createHub,
  HUB,
  type SocketEvents,
  upgraderOf,
} from '../src/adapter.js'
import {
  CloseError,
  type Conn,
  type EventController,
  type EventControllerWithHooks,
  getHub,
  InternalErrorMessage,
  type Message,
  NormalClosureMessage,
  Upgrader,
  upgrade,
} from '../src/index.js'
import { connect, hibernatable, UpgradeRejectedError } from '../src/testing.js'

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

function deferred(): { promise: Promise<void>; resolve(): void; reject(err: unknown): void } {
  let resolve!: () => void
  let reject!: (err: unknown) => void
  const promise = new Promise<void>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

const text = (data: string): Message => ({ type: 'text', data })

const HANDSHAKE = {
  Upgrade: 'websocket',
  Connection: 'Upgrade',
  'Sec-WebSocket-Version': '13',
  'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
}

/**
 * An adapter that opens the socket inside upgrade(), as Bun and workerd do, and hands the test
 * the core's SocketEvents to drive by hand.
 */
function manualAdapter(onOpen?: (events: SocketEvents) => void) {
  const manual = {
    events: undefined as SocketEvents | undefined,
    sent: [] as unknown[],
    async upgrade(handler: ReturnType<typeof upgrade>): Promise<Response> {
      const hub = createHub()
      const adapter: Adapter = {
        name: 'manual',
        hub: () => hub,
        upgrade(_c, request) {
          manual.events = request.open({
            send: (data) => {
              manual.sent.push(data)
            },
            close() {},
            bufferedAmount: 0,
            emitsDrain: false,
          })
          onOpen?.(manual.events)
          return new Response(null, { status: 200 })
        },
      }
      const app = new Hono().get('/', handler)
      return app.request('/', { headers: HANDSHAKE }, { [ADAPTER]: adapter })
    },
  }
  return manual
}

/** An echo that records every event it saw. */
function recorder() {
  const events: string[] = []
  const controller: EventController = {
    open(conn) {
      events.push(`open ${conn.state}`)
    },
    message(conn, msg) {
      events.push(`message ${msg.data}`)
      return conn.send(msg.data)
    },
    close(conn, err) {
      events.push(`close ${err.code} ${conn.state}`)
    },
  }
  return { events, controller }
}

describe('event controllers: the handlers', () => {
  it('runs open, message per message, and close once, in order', async () => {
    const { events, controller } = recorder()
    const peer = await connect(controller)
    peer.send('a')
    peer.send(new Uint8Array([1, 2]))
    expect(await peer.read()).toEqual(text('a'))
    expect(await peer.read()).toEqual({ type: 'binary', data: new Uint8Array([1, 2]) })
    peer.close(4000, 'bye')
    expect(await peer.closed).toEqual({ code: 4000, reason: 'bye', wasClean: true })
    await vi.waitFor(() => expect(events).toContain('close 4000 closed'))
    expect(events).toEqual(['open open', 'message a', 'message 1,2', 'close 4000 closed'])
  })

  it('never overlaps handlers: a second message waits for the first message() to settle', async () => {
    const gate = deferred()
    const seen: string[] = []
    let running = 0
    let overlapped = false
    const peer = await connect({
      async message(conn, msg) {
        running++
        if (running > 1) overlapped = true
        seen.push(`start ${msg.data}`)
        if (msg.data === 'first') await gate.promise
        seen.push(`end ${msg.data}`)
        running--
        await conn.send(msg.data as string)
      },
    })
    peer.send('first')
    peer.send('second')
    peer.send('third')
    await sleep(20)
    expect(seen).toEqual(['start first'])
    gate.resolve()
    expect(await peer.read()).toEqual(text('first'))
    expect(await peer.read()).toEqual(text('second'))
    expect(await peer.read()).toEqual(text('third'))
    expect(seen).toEqual([
      'start first',
      'end first',
      'start second',
      'end second',
      'start third',
      'end third',
    ])
    expect(overlapped).toBe(false)
  })

  it('holds messages until an async open() settles', async () => {
    const gate = deferred()
    const seen: string[] = []
    const peer = await connect({
      async open() {
        seen.push('open')
        await gate.promise
        seen.push('opened')
      },
      message(_conn, msg) {
        seen.push(msg.data as string)
      },
    })
    peer.send('early')
    await sleep(10)
    expect(seen).toEqual(['open'])
    gate.resolve()
    await vi.waitFor(() => expect(seen).toEqual(['open', 'opened', 'early']))
  })

  it('runs close once, after the handler in flight, even when the peer leaves meanwhile', async () => {
    const gate = deferred()
    const seen: string[] = []
    const peer = await connect({
      async message(_conn, msg) {
        seen.push(`start ${msg.data}`)
        await gate.promise
        seen.push(`end ${msg.data}`)
      },
      close(_conn, err) {
        seen.push(`close ${err.code}`)
      },
    })
    peer.send('slow')
    await sleep(5)
    peer.close(1000)
    await peer.closed
    await sleep(10)
    expect(seen).toEqual(['start slow'])
    gate.resolve()
    await vi.waitFor(() => expect(seen).toEqual(['start slow', 'end slow', 'close 1000']))
    await sleep(10)
    expect(seen).toHaveLength(3)
  })

  it('gives close the CloseError of a vanished peer (1006) and of a fault (1007)', async () => {
    const errors: CloseError[] = []
    const controller: EventController = {
      message() {},
      close: (_conn, err) => {
        errors.push(err)
      },
    }
    const vanished = await connect(controller)
    vanished.vanish()
    const faulty = await connect(controller)
    faulty.fault(1007, 'invalid UTF-8')
    await vi.waitFor(() => expect(errors).toHaveLength(2))
    expect(errors[0]).toMatchObject({ name: 'CloseError', code: 1006, wasClean: false })
    expect(errors[1]).toMatchObject({ code: 1007 })
  })

  it('runs close, and settles, when the connection ended before the controller started', async () => {
    // Bun and workerd open the socket inside adapter.upgrade(): the controller starts on a
    // later turn, and the peer may already be gone by then.
    const closes: number[] = []
    const manual = manualAdapter((events) => events.closed(1006, ''))
    await manual.upgrade(
      upgrade({
        message() {},
        close(_conn, err) {
          closes.push(err.code)
        },
      }),
    )
    await vi.waitFor(() => expect(closes).toEqual([1006]))
    await expect(manual.events?.ended).resolves.toBeUndefined()
  })

  it('settles events.ended once close has settled', async () => {
    const gate = deferred()
    const manual = manualAdapter()
    await manual.upgrade(upgrade({ message() {}, close: () => gate.promise }))
    let ended = false
    void manual.events?.ended.then(() => {
      ended = true
    })
    await sleep(5)
    manual.events?.closed(1000, '')
    await sleep(5)
    expect(ended).toBe(false)
    gate.resolve()
    await vi.waitFor(() => expect(ended).toBe(true))
  })
})

describe('event controllers: errors map to close codes as for serve', () => {
  const throwing = (where: 'open' | 'message', how: 'sync' | 'async', err: unknown) => {
    const fail =
      how === 'sync'
        ? () => {
            throw err
          }
        : async () => {
            await sleep(1)
            throw err
          }
    return where === 'open' ? { open: fail, message() {} } : { message: fail }
  }

  for (const where of ['open', 'message'] as const) {
    for (const how of ['sync', 'async'] as const) {
      it(`logs a ${how} throw in ${where}() with its stack, then closes with 1011`, async () => {
        const logger = { error: vi.fn() }
        const closes: number[] = []
        const controller: EventControllerWithHooks = {
          ...throwing(where, how, new Error(`boom in ${where}`)),
          close: (_conn, err) => {
            closes.push(err.code)
          },
        }
        const peer = await connect(controller, '/', { upgrade: { logger } })
        if (where === 'message') peer.send('go')
        expect(await peer.closed).toEqual({
          code: 1011,
          reason: InternalErrorMessage,
          wasClean: true,
        })
        expect(logger.error).toHaveBeenCalledOnce()
        const [, logged] = logger.error.mock.calls[0] as [string, Error]
        expect(logged.message).toBe(`boom in ${where}`)
        expect(logged.stack).toMatch(/\n\s+at /)
        await vi.waitFor(() => expect(closes).toEqual([1011]))
      })
    }
  }

  it('hands the error to onError instead of the logger, with a context that knows the URL', async () => {
    const logger = { error: vi.fn() }
    const seen: { path: string; message: string }[] = []
    const app = new Hono().get(
      '/room/:name',
      upgrade(
        {
          message() {
            throw new Error('bad message')
          },
          onError(c, err) {
            seen.push({ path: c.req.path, message: (err as Error).message })
          },
        },
        { logger },
      ),
    )
    const peer = await connect(app, '/room/lobby?x=1')
    peer.send('go')
    expect(await peer.closed).toMatchObject({ code: 1011, reason: InternalErrorMessage })
    expect(seen).toEqual([{ path: '/room/lobby', message: 'bad message' }])
    expect(logger.error).not.toHaveBeenCalled()
  })

  it("fails clearly when onError reads the upgrade request's headers after open", async () => {
    const seen: unknown[] = []
    const peer = await connect({
      message() {
        throw new Error('bad message')
      },
      onError(c) {
        try {
          c.req.header('authorization')
        } catch (err) {
          seen.push(err)
        }
      },
    })
    peer.send('go')
    await peer.closed
    expect(seen).toHaveLength(1)
    expect(String(seen[0])).toMatch(/headers.*open\(\).*conn\.data/)
  })

  it('sends the error message as the 1011 reason under debug', async () => {
    const peer = await connect(
      {
        message() {
          throw new Error('the details')
        },
      },
      '/',
      { upgrade: { debug: true, logger: { error() {} } } },
    )
    peer.send('go')
    expect(await peer.closed).toMatchObject({ code: 1011, reason: 'the details' })
  })

  it('closes with 1000 when a handler throws a normal close error, and reports nothing', async () => {
    const logger = { error: vi.fn() }
    const onError = vi.fn()
    const peer = await connect(
      {
        message() {
          throw new CloseError(1001, 'going away', true)
        },
        onError,
      },
      '/',
      { upgrade: { logger } },
    )
    peer.send('go')
    expect(await peer.closed).toEqual({
      code: 1000,
      reason: NormalClosureMessage,
      wasClean: true,
    })
    expect(onError).not.toHaveBeenCalled()
    expect(logger.error).not.toHaveBeenCalled()
  })

  it('hands no more messages to the controller once a handler failed', async () => {
    const gate = deferred()
    const seen: string[] = []
    const peer = await connect({
      message(_conn, msg) {
        seen.push(msg.data as string)
        if (msg.data === 'fail') throw new Error('failed')
      },
      // A slow onError: the close waits for it, and the peer keeps sending meanwhile.
      onError: () => gate.promise,
    })
    peer.send('fail')
    await sleep(5)
    peer.send('after 1')
    peer.send('after 2')
    await sleep(10)
    gate.resolve()
    expect(await peer.closed).toMatchObject({ code: 1011 })
    expect(seen).toEqual(['fail'])
  })

  it('reports an error thrown by close, and nothing else happens', async () => {
    const logger = { error: vi.fn() }
    const peer = await connect(
      {
        message() {},
        async close() {
          throw new Error('close failed')
        },
      },
      '/',
      { upgrade: { logger } },
    )
    peer.close(1000)
    expect(await peer.closed).toMatchObject({ code: 1000, wasClean: true })
    await vi.waitFor(() => expect(logger.error).toHaveBeenCalledOnce())
    expect((logger.error.mock.calls[0] as unknown[])[1]).toMatchObject({ message: 'close failed' })
  })

  it('gives onError the error close threw', async () => {
    const onError = vi.fn()
    const peer = await connect({
      message() {},
      close() {
        throw new Error('close failed')
      },
      onError,
    })
    peer.close(1000)
    await peer.closed
    await vi.waitFor(() => expect(onError).toHaveBeenCalledOnce())
    expect(onError.mock.calls[0]?.[1]).toMatchObject({ message: 'close failed' })
  })
})

describe('event controllers: bounds', () => {
  it('pauses the socket past maxInboundBuffer while message() is slow, and loses nothing', async () => {
    const gate = deferred()
    let count = 0
    const peer = await connect(
      {
        async message(conn, msg) {
          if (count++ === 0) await gate.promise
          if (msg.data === 'end') await conn.send(`count:${count - 1}`)
        },
      },
      '/',
      { upgrade: { maxInboundBuffer: 4096 + 64, maxMessageSize: 4096 } },
    )
    const chunk = new Uint8Array(1024)
    // One at a time, as a network delivers them: the pause holds back what follows.
    for (let i = 0; i < 50; i++) {
      peer.send(chunk)
      await sleep(0)
    }
    peer.send('end')
    await sleep(20)
    // The server paused: the peer holds what it could not deliver.
    expect(peer.pendingBytes).toBeGreaterThan(0)
    expect(count).toBe(1)
    gate.resolve()
    expect(await peer.read()).toEqual(text('count:50'))
  })

  it('paces message() by the returned send: a peer that does not read pauses the sender', async () => {
    let handled = 0
    const peer = await connect(
      {
        message(conn, msg) {
          handled++
          return conn.send(msg.data)
        },
      },
      '/',
      { upgrade: { sendHighWaterMark: 2048, maxInboundBuffer: 4096 + 64, maxMessageSize: 4096 } },
    )
    peer.stopReading()
    for (let i = 0; i < 40; i++) {
      peer.send(new Uint8Array(1024))
      await sleep(0)
    }
    // The echoes pile up unread: send() stops resolving, message() waits, and the inbound
    // bound pauses the peer instead of running every handler.
    expect(handled).toBeLessThan(10)
    expect(peer.pendingBytes).toBeGreaterThan(0)
    peer.startReading()
    await vi.waitFor(() => expect(handled).toBe(40))
  })

  it('closes with 1008 past the bound where the socket cannot pause (a Durable Object)', async () => {
    const gate = deferred()
    const closes: CloseError[] = []
    const room = hibernatable(
      () => ({
        async message() {
          await gate.promise
        },
        close(_conn, err) {
          closes.push(err)
        },
      }),
      { upgrade: { maxInboundBuffer: 4096 + 64, maxMessageSize: 4096 } },
    )
    const peer = await room.connect()
    // One at a time, as a network delivers them: a socket that could pause would pause here.
    for (let i = 0; i < 20 && peer.closeFrames.length === 0; i++) {
      peer.send(new Uint8Array(1024))
      await sleep(0)
    }
    const frame = await peer.closeFrame
    expect(frame.code).toBe(1008)
    expect(frame.reason).toMatch(/Inbound buffer over 4160 bytes/)
    gate.resolve()
    await vi.waitFor(() => expect(closes).toHaveLength(1))
    expect(closes[0]?.code).toBe(1008)
  })

  it('closes with 1009 on a message over maxMessageSize', async () => {
    const seen: string[] = []
    const peer = await connect(
      {
        message(_conn, msg) {
          seen.push(msg.type)
        },
      },
      '/',
      { upgrade: { maxMessageSize: 10, maxInboundBuffer: 1000 } },
    )
    peer.send('0123456789')
    peer.send('0123456789!')
    expect(await peer.closed).toMatchObject({ code: 1009 })
    expect(seen).toEqual(['text'])
  })
})

describe('event controllers: the hooks apply unchanged', () => {
  it('refuses a foreign origin by default, and lets checkOrigin decide', async () => {
    const refused = await connect({ message() {} }, '/', {
      headers: { Origin: 'https://evil.example' },
    }).catch((err: unknown) => err)
    expect(refused).toBeInstanceOf(UpgradeRejectedError)
    expect((refused as UpgradeRejectedError).response.status).toBe(403)
    const allowed = await connect({ message() {}, checkOrigin: () => true }, '/', {
      headers: { Origin: 'https://evil.example' },
    })
    expect(allowed.response.status).toBe(101)
  })

  it('adds upgradeHeaders and the chosen subprotocol to the 101', async () => {
    let protocol = ''
    const peer = await connect(
      {
        upgradeHeaders: () => ({ 'X-Room': 'lobby' }),
        open(conn) {
          protocol = conn.protocol
        },
        message() {},
      },
      '/',
      { protocols: ['v1', 'v2'], upgrade: { subprotocols: ['v2'] } },
    )
    expect(peer.response.headers.get('x-room')).toBe('lobby')
    expect(peer.protocol).toBe('v2')
    await vi.waitFor(() => expect(protocol).toBe('v2'))
  })

  it('lets onUpgradeError answer a failed upgrade', async () => {
    const app = new Hono().get(
      '/',
      upgrade({
        message() {},
        onUpgradeError: (_c, status) => new Response('custom', { status }),
      }),
    )
    const res = await app.request('/')
    expect(res.status).toBe(400)
    expect(await res.text()).toBe('custom')
    expect(res.headers.get('sec-websocket-version')).toBe('13')
  })

  it('gives open the Hono context of the upgrade request', async () => {
    const seen: string[] = []
    const app = new Hono().get(
      '/rooms/:room',
      upgrade({
        open(conn, c) {
          seen.push(c.req.param('room') ?? '', c.req.header('x-user') ?? '', conn.url)
        },
        message() {},
      }),
    )
    await connect(app, '/rooms/lobby', { headers: { 'X-User': 'alice' } })
    await vi.waitFor(() => expect(seen).toEqual(['lobby', 'alice', 'http://localhost/rooms/lobby']))
  })
})

describe('event controllers: the Conn', () => {
  it('rejects conn.read() and iteration with an error that says to use message()', async () => {
    const errors: unknown[] = []
    await connect({
      async open(conn) {
        errors.push(await conn.read().catch((err: unknown) => err))
        try {
          for await (const _ of conn) break
        } catch (err) {
          errors.push(err)
        }
      },
      message() {},
    })
    await vi.waitFor(() => expect(errors).toHaveLength(2))
    for (const err of errors) {
      expect(String(err)).toMatch(/event controller gets its messages in message\(\)/)
    }
  })

  it('keeps conn.data between messages; a value over 2 KiB to workerd, or a function, is a RangeError', async () => {
    const errors: string[] = []
    const peer = await connect({
      open(conn: Conn<{ n: number }>) {
        conn.data = { n: 0 }
      },
      message(conn: Conn<{ n: number; big?: string }>, msg) {
        if (msg.data === 'big') {
          try {
            conn.data = { n: conn.data.n, big: 'x'.repeat(2048) }
          } catch (err) {
            errors.push(`${(err as Error).name}: ${(err as Error).message}`)
          }
          return
        }
        if (msg.data === 'function') {
          try {
            conn.data = { n: 1, f() {} } as never
          } catch (err) {
            errors.push(`${(err as Error).name}: ${(err as Error).message}`)
          }
          return
        }
        conn.data = { n: conn.data.n + 1 }
        return conn.send(String(conn.data.n))
      },
    })
    peer.send('a')
    peer.send('big')
    peer.send('function')
    peer.send('b')
    expect(await peer.read()).toEqual(text('1'))
    expect(await peer.read()).toEqual(text('2'))
    expect(errors).toHaveLength(2)
    expect(errors[0]).toMatch(
      /^RangeError: conn\.data is 2\d{3} bytes in workerd's serialization; the limit is 2048/,
    )
    expect(errors[1]).toMatch(
      /^RangeError: conn\.data is stored with the socket, as a structured clone: conn\.data\.f is a function, which cannot be cloned/,
    )
  })

  it('measures conn.data as workerd does, not as JSON (issue 18 #15)', async () => {
    const sizes: (number | string)[] = []
    const peer = await connect({
      message(conn: Conn<unknown>, msg) {
        const values: Record<string, unknown> = {
          // 1,114 bytes as JSON, 2,216 to workerd: one character past U+00FF makes the string UTF-16.
          wide: { name: `${'x'.repeat(1100)}€` },
          // 2,061 bytes as JSON, 1,039 to workerd: Latin-1 takes one byte there.
          latin1: { name: 'é'.repeat(1025) },
          // Dropped by JSON; refused by workerd.
          symbol: { s: Symbol('s') },
          error: { e: new Error('e') },
          weak: { w: new WeakMap() },
        }
        try {
          conn.data = values[String(msg.data)]
          sizes.push('stored')
        } catch (err) {
          sizes.push(`${(err as Error).name}: ${(err as Error).message}`)
        }
        return conn.send('done')
      },
    })
    for (const name of ['wide', 'latin1', 'symbol', 'error', 'weak']) {
      peer.send(name)
      await peer.read()
    }
    expect(sizes[0]).toMatch(/^RangeError: conn\.data is 2216 bytes in workerd's serialization/)
    expect(sizes[1]).toBe('stored')
    expect(sizes[2]).toMatch(/^RangeError: .*conn\.data\.s is a symbol/)
    expect(sizes[3]).toMatch(/^RangeError: .*conn\.data\.e is an Error \(store its message\)/)
    expect(sizes[4]).toMatch(/^RangeError: .*conn\.data\.w is a WeakMap/)
  })

  it('subscribes, publishes to the others and not the sender, and leaves on close', async () => {
    const hub = createHub()
    const topics = hub.topics
    const app = new Hono().get(
      '/',
      upgrade({
        async open(conn) {
          await conn.subscribe('room')
        },
        message(conn, msg) {
          conn.publish('room', msg.data)
        },
      }),
    )
    const alice = await connect(app, '/', { hub })
    const bob = await connect(app, '/', { hub })
    await vi.waitFor(() => expect(topics.subscribers('room')).toBe(2))
    alice.send('hi from alice')
    expect(await bob.read()).toEqual(text('hi from alice'))
    topics.publish('room', 'from the server')
    expect(await alice.read()).toEqual(text('from the server'))
    expect(await bob.read()).toEqual(text('from the server'))
    bob.close(1000)
    await bob.closed
    await vi.waitFor(() => expect(topics.subscribers('room')).toBe(1))
  })
})

describe('hibernatable(): eviction between events', () => {
  it('stores conn.data and the topics with the socket from the start', async () => {
    const room = hibernatable(() => ({
      open(conn: Conn<{ name: string }>) {
        conn.data = { name: 'alice' }
        return conn.subscribe('lobby')
      },
      message() {},
    }))
    const peer = await room.connect({ protocols: ['v1'] })
    await vi.waitFor(() =>
      expect(peer.persisted).toEqual({
        protocol: '',
        url: 'http://localhost/',
        data: { name: 'alice' },
        topics: ['lobby'],
      }),
    )
  })

  it('stores the URL and protocol even when open() stores nothing', async () => {
    const room = hibernatable(() => ({ message() {} }), {
      upgrade: { subprotocols: ['v1'] },
      path: '/ws',
    })
    const peer = await room.connect({ protocols: ['v1'] })
    expect(peer.persisted).toEqual({
      protocol: 'v1',
      url: 'http://localhost/ws',
      data: undefined,
      topics: [],
    })
  })

  it('rebuilds each Conn with its data and topics, without running open again', async () => {
    let opens = 0
    const room = hibernatable(() => ({
      open(conn: Conn<{ name: string }>) {
        opens++
        conn.data = { name: `user${opens}` }
        return conn.subscribe('room')
      },
      message(conn: Conn<{ name: string }>, msg) {
        conn.publish('room', `${conn.data.name}: ${msg.data}`)
      },
    }))
    const alice = await room.connect()
    const bob = await room.connect()
    await vi.waitFor(() => expect(room.topics.subscribers('room')).toBe(2))
    room.evict()
    expect(room.evictions).toBe(1)
    expect(room.topics.subscribers('room')).toBe(2)
    expect(room.connections.size).toBe(2)
    alice.send('hello')
    expect(await bob.read()).toEqual(text('user1: hello'))
    room.topics.publish('room', 'announcement')
    expect(await alice.read()).toEqual(text('announcement'))
    expect(opens).toBe(2)
  })

  it('answers the close handshake with no timer armed, as a Durable Object does', async () => {
    vi.useFakeTimers()
    try {
      const room = hibernatable(() => ({
        message(conn) {
          return conn.close(4000, 'done')
        },
      }))
      const peer = await room.connect()
      peer.send('go')
      await vi.waitFor(() => expect(peer.closeFrames).toHaveLength(1))
      expect(vi.getTimerCount()).toBe(0)
      expect(await peer.closed).toMatchObject({ code: 4000, wasClean: true })
    } finally {
      vi.useRealTimers()
    }
  })
})

// The example of the core README's "Test kit" section: keep these two in step with it.
describe('README: a controller that keeps state in memory fails its eviction test', () => {
  /** Counts messages in a field of the controller: lost when the object hibernates. */
  class FieldCounter implements EventController {
    count = 0
    message(conn: Conn, msg: Message) {
      this.count++
      return conn.send(`${msg.data} #${this.count}`)
    }
  }

  /** Counts messages in conn.data: stored with the socket, it survives. */
  class DataCounter implements EventController<{ count: number }> {
    open(conn: Conn<{ count: number }>) {
      conn.data = { count: 0 }
    }
    message(conn: Conn<{ count: number }>, msg: Message) {
      conn.data = { count: conn.data.count + 1 }
      return conn.send(`${msg.data} #${conn.data.count}`)
    }
  }

  async function countTwice(factory: () => EventController): Promise<string[]> {
    const room = hibernatable(factory, { evictEveryEvent: true })
    const peer = await room.connect()
    const answers: string[] = []
    for (const message of ['a', 'b']) {
      peer.send(message)
      answers.push(((await peer.read()) as { data: string }).data)
    }
    return answers
  }

  it('fails with the count in a field', async () => {
    // The field starts again at 0 after each eviction: the user's test catches the bug.
    await expect(countTwice(() => new FieldCounter())).resolves.not.toEqual(['a #1', 'b #2'])
    expect(await countTwice(() => new FieldCounter())).toEqual(['a #1', 'b #1'])
  })

  it('passes with the count in conn.data', async () => {
    expect(await countTwice(() => new DataCounter())).toEqual(['a #1', 'b #2'])
  })
})

describe('Upgrader.wake()', () => {
  it('refuses a serve controller: a read loop cannot survive a hibernation', () => {
    const upgrader = new Upgrader({ serve() {} })
    expect(() =>
      upgrader.wake(
        { send() {}, close() {}, bufferedAmount: 0, emitsDrain: false },
        { protocol: '', url: 'http://localhost/', data: undefined, topics: [] },
        createHub(),
      ),
    ).toThrow(/Only an event controller/)
  })
})

describe('for adapters that hibernate', () => {
  it('finds the upgrader behind a handler, and nothing behind other functions', () => {
    const upgrader = new Upgrader({ message() {} })
    expect(upgraderOf(upgrader.handler())).toBe(upgrader)
    expect(upgraderOf(upgrade({ message() {} }))).toBeInstanceOf(Upgrader)
    expect(upgraderOf(() => {})).toBeUndefined()
    expect(upgraderOf(undefined)).toBeUndefined()
  })

  it("joins the request's hub (HUB in the env), else the adapter's default; wake joins the hub given", async () => {
    const defaultHub = createHub()
    const own = createHub()
    const seen: unknown[] = []
    const subscribe = {
      open: (conn: Conn, c: Parameters<typeof getHub>[0]) => {
        seen.push(conn.hub === getHub(c))
        return conn.subscribe('t')
      },
      message() {},
    }
    const adapter: Adapter = {
      name: 'object',
      hub: () => defaultHub,
      upgrade(_c, request) {
        request.open({ send() {}, close() {}, bufferedAmount: 0, emitsDrain: false })
        return new Response(null, { status: 200 })
      },
    }
    const app = new Hono().get('/', upgrade(subscribe))
    await app.request('/', { headers: HANDSHAKE }, { [ADAPTER]: adapter })
    await app.request('/', { headers: HANDSHAKE }, { [ADAPTER]: adapter, [HUB]: own })
    await vi.waitFor(() => expect(defaultHub.topics.subscribers('t')).toBe(1))
    expect(own.topics.subscribers('t')).toBe(1)
    expect(defaultHub.connections.size).toBe(1)
    expect(own.connections.size).toBe(1)
    expect(seen).toEqual([true, true])

    const woken = createHub()
    new Upgrader(subscribe).wake(
      { send() {}, close() {}, bufferedAmount: 0, emitsDrain: false },
      { protocol: '', url: 'http://localhost/', data: undefined, topics: ['t'] },
      woken,
    )
    expect(woken.topics.subscribers('t')).toBe(1)
    expect(woken.connections.size).toBe(1)
  })
})

describe('hibernatable(): the cloning rules and the budget of a Durable Object (issue 18 #15)', () => {
  it('gives back a Map, a Set, a Date and undefined as a structured clone does, not as JSON', async () => {
    const room = hibernatable(() => ({
      open(conn: Conn<unknown>) {
        conn.data = {
          members: new Map([['alice', { joined: new Date(0) }]]),
          seen: new Set([1, 2]),
          note: undefined,
        }
      },
      message(conn: Conn<{ members: Map<string, { joined: Date }>; seen: Set<number> }>) {
        const alice = conn.data.members.get('alice')
        return conn.send(
          `${conn.data.members instanceof Map} ${alice?.joined instanceof Date} ${[...conn.data.seen]} ${'note' in conn.data}`,
        )
      },
    }))
    const peer = await room.connect()
    room.evict()
    peer.send('?')
    expect(await peer.read()).toEqual(text('true true 1,2 true'))
  })

  it('refuses a function in conn.data at assignment, as workerd refuses to store it', async () => {
    const errors: string[] = []
    const room = hibernatable(() => ({
      open(conn: Conn<unknown>) {
        try {
          conn.data = { onLeave: () => {} }
        } catch (err) {
          errors.push(`${(err as Error).name}: ${(err as Error).message}`)
        }
      },
      message() {},
    }))
    await room.connect()
    expect(errors).toEqual([
      expect.stringMatching(
        /^RangeError: .*conn\.data\.onLeave is a function, which cannot be cloned/,
      ),
    ])
  })

  it("refuses topics past workerd's 16 KiB with the documented RangeError", async () => {
    const outcome: string[] = []
    const room = hibernatable(() => ({
      async message(conn: Conn) {
        try {
          // About 9 KB as JSON, over 16 KiB to workerd: one € per topic.
          for (let i = 0; i < 100; i++)
            await conn.subscribe(`€${String(i).padStart(4, '0')}${'x'.repeat(80)}`)
          outcome.push(`subscribed to ${conn.topics.size}`)
        } catch (err) {
          outcome.push(`${(err as Error).name}: ${(err as Error).message}`)
        }
        return conn.send('done')
      },
    }))
    const peer = await room.connect()
    peer.send('subscribe')
    await peer.read()
    expect(outcome).toEqual([
      expect.stringMatching(
        /^RangeError: The connection's state takes \d+ bytes in workerd's serialization, with its URL and \d+ topics; a socket stores at most 16384/,
      ),
    ])
  })
})

describe('hibernatable(): routes with parameters', () => {
  it('mounts the controller on a route, and connects each peer on its own path', async () => {
    const room = hibernatable(
      () => ({
        open(conn: Conn<{ room: string; name: string }>, c) {
          conn.data = { room: c.req.param('room') ?? '', name: c.req.query('name') ?? '' }
        },
        message(conn: Conn<{ room: string; name: string }>) {
          return conn.send(`${conn.data.name} in ${conn.data.room}`)
        },
      }),
      { route: '/ws/:room', evictEveryEvent: true },
    )
    const alice = await room.connect({ path: '/ws/lobby?name=alice' })
    const bob = await room.connect({ path: '/ws/lobby?name=bob' })
    alice.send('who')
    bob.send('who')
    expect(await alice.read()).toEqual(text('alice in lobby'))
    expect(await bob.read()).toEqual(text('bob in lobby'))
    expect(alice.persisted?.url).toBe('http://localhost/ws/lobby?name=alice')
  })

  it('takes the path as a string, as connect(app, path) does (issue 18 #28)', async () => {
    const room = hibernatable(
      () => ({
        open(conn: Conn<{ room: string; name: string }>, c) {
          conn.data = { room: c.req.param('room') ?? '', name: c.req.query('name') ?? '' }
        },
        message(conn: Conn<{ room: string; name: string }>) {
          return conn.send(`${conn.data.name} in ${conn.data.room}`)
        },
      }),
      { route: '/ws/:room', evictEveryEvent: true },
    )
    const alice = await room.connect('/ws/lobby?name=alice')
    const bob = await room.connect('/ws/attic?name=bob', { headers: { 'x-test': '1' } })
    alice.send('who')
    bob.send('who')
    expect(await alice.read()).toEqual(text('alice in lobby'))
    expect(await bob.read()).toEqual(text('bob in attic'))
    expect(bob.persisted?.url).toBe('http://localhost/ws/attic?name=bob')
  })

  it("refuses the upgrader's options and a registry per connection, saying where they go", async () => {
    const room = hibernatable(() => ({ message() {} }))
    await expect(room.connect('/', { upgrade: { maxMessageSize: 10 } } as never)).rejects.toThrow(
      /pass upgrader options to hibernatable\(factory, \{ upgrade \}\)/,
    )
  })
})
