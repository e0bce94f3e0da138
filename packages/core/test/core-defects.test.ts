/**
 * Issue 18's defects of the core (items 4, 6, 9, 10, 13, 14, 23, 25, 26): each test failed
 * before its fix.
 */
import { Hono } from 'hono'
import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  ADAPTER,
  type Adapter,
  type Backplane,
  type BackplaneSink,
  type ConnSnapshot,
  createHub,
  HUB,
  type RuntimeSocket,
  type SocketEvents,
  type UpgradeRequest,
} from '../src/adapter.js'
import {
  type CloseError,
  type Conn,
  type Controller,
  type EventController,
  type Hub,
  type MessageData,
  type UpgradeOptions,
  Upgrader,
  upgrade,
} from '../src/index.js'
import { connect } from '../src/testing.js'

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const tick = () => sleep(0)

const HANDSHAKE = {
  Upgrade: 'websocket',
  Connection: 'Upgrade',
  'Sec-WebSocket-Version': '13',
  'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
}

/** A hand-driven runtime socket; what it does on close and persist is the test's. */
interface ManualSocket extends RuntimeSocket {
  events?: SocketEvents
  closes: [number, string][]
  stored: ConnSnapshot[]
}

/**
 * Opens one connection of `handler` on a runtime made of `socket`: the adapter opens it inside
 * upgrade(), as Bun and workerd do. Resolves once the controller has started.
 */
async function openOn(
  handler: ReturnType<typeof upgrade>,
  socket: ManualSocket,
  hub: Hub = createHub(),
): Promise<ManualSocket> {
  const adapter: Adapter = {
    name: 'manual',
    hub: () => hub,
    upgrade(_c, request) {
      socket.events = request.open(socket)
      return new Response(null, { status: 200 })
    },
  }
  const response = await new Hono()
    .get('/', handler)
    .request('/', { headers: HANDSHAKE }, { [ADAPTER]: adapter, [HUB]: hub })
  expect(response.status).toBe(200)
  await tick()
  return socket
}

/** A socket that ends the connection inside close(), as Bun does. */
function bunLikeSocket(extra: Partial<RuntimeSocket> = {}): ManualSocket {
  const socket: ManualSocket = {
    closes: [],
    stored: [],
    bufferedAmount: 0,
    emitsDrain: false,
    send() {},
    close(code, reason) {
      socket.closes.push([code, reason])
      socket.events?.closed(code, reason, false)
    },
    ...extra,
  }
  return socket
}

// --- #4 ---

describe("issue 18 #4: one slow-subscriber check per turn on a runtime's tree", () => {
  afterEach(() => {
    vi.restoreAllMocks()
  })

  it('arms one timer for a turn of many publishes, not one per publish', async () => {
    const hub = createHub()
    const topics = hub.topics
    const treePublishes: string[] = []
    const tree = { publish: (topic: string) => void treePublishes.push(topic) }
    const checks = { count: 0 }
    const sockets = [0, 1, 2].map(() => {
      const socket = bunLikeSocket({ tree, subscribe() {}, unsubscribe() {}, publish() {} })
      Object.defineProperty(socket, 'bufferedAmount', {
        get() {
          checks.count++
          return 0
        },
      })
      return socket
    })
    const room: EventController = {
      open: (conn) => conn.subscribe('room'),
      message() {},
    }
    for (const socket of sockets) await openOn(upgrade(room), socket, hub)
    expect(topics.subscribers('room')).toBe(3)

    const setTimeoutSpy = vi.spyOn(globalThis, 'setTimeout')
    for (let i = 0; i < 100; i++) topics.publish('room', `m${i}`)
    const armed = setTimeoutSpy.mock.calls.length
    setTimeoutSpy.mockRestore()
    expect(treePublishes).toHaveLength(100)
    expect(armed).toBe(1)
    // The one check reads each subscriber's backlog once.
    checks.count = 0
    await sleep(5)
    expect(checks.count).toBe(3)
    // A later turn arms its own.
    const again = vi.spyOn(globalThis, 'setTimeout')
    topics.publish('room', 'later')
    topics.publish('room', 'later')
    expect(again.mock.calls.length).toBe(1)
  })
})

// --- #6 ---

/** A backplane that only hands its sink to the test. */
class SinkOnly implements Backplane {
  sink!: BackplaneSink
  start(sink: BackplaneSink): void {
    this.sink = sink
  }
  async subscribe(_topic: string): Promise<void> {}
  async unsubscribe(_topic: string): Promise<void> {}
  publish(_topic: string, _data: MessageData): void {}
  async close(): Promise<void> {}
}

describe("issue 18 #6: a throwing 'restore' listener breaks nothing", () => {
  it('reports a throw and a rejection to onError, and the other listeners still run', async () => {
    const onError = vi.fn()
    const hub = createHub({ onError })
    const topics = hub.topics
    const backplane = new SinkOnly()
    await topics.useBackplane(backplane)
    const bug = new Error('listener bug')
    const later = new Error('async listener bug')
    const calls: string[] = []
    topics.addEventListener('restore', () => {
      calls.push('throws')
      throw bug
    })
    topics.addEventListener('restore', async () => {
      calls.push('rejects')
      throw later
    })
    topics.addEventListener('restore', {
      handleEvent(event: Event) {
        calls.push(`object ${event.type}`)
      },
    })
    backplane.sink.down(new Error('engine down'))
    expect(onError).toHaveBeenCalledOnce()
    backplane.sink.up()
    await tick()
    expect(calls).toEqual(['throws', 'rejects', 'object restore'])
    expect(onError.mock.calls.map(([err]) => err)).toEqual([
      expect.objectContaining({ message: 'engine down' }),
      bug,
      later,
    ])
  })

  it('logs it without onError, and removeEventListener still removes a listener', async () => {
    const logger = { error: vi.fn() }
    const hub = createHub({ logger })
    const topics = hub.topics
    const backplane = new SinkOnly()
    await topics.useBackplane(backplane)
    const removed = vi.fn()
    const throws = () => {
      throw new Error('listener bug')
    }
    topics.addEventListener('restore', throws)
    topics.addEventListener('restore', removed)
    topics.removeEventListener('restore', removed)
    backplane.sink.down(new Error('engine down'))
    backplane.sink.up()
    expect(removed).not.toHaveBeenCalled()
    expect(logger.error).toHaveBeenCalledTimes(2)
    expect(String(logger.error.mock.calls[1]?.[0])).toMatch(
      /'restore' listener of Topics failed.*listener bug/,
    )
    topics.removeEventListener('restore', throws)
    backplane.sink.down(new Error('again'))
    backplane.sink.up()
    expect(logger.error).toHaveBeenCalledTimes(3)
  })
})

// --- #9, #10 ---

/** A serve controller that subscribes to what `topicsFor` says and reports each outcome. */
function subscriber(names: string[], outcomes: unknown[]): Controller {
  return {
    async serve(conn: Conn) {
      for (const name of names) {
        outcomes.push(
          await conn.subscribe(name).then(
            () => 'ok',
            (err: unknown) => err,
          ),
        )
      }
      await conn.send(JSON.stringify([...conn.topics]))
      for await (const _ of conn) {
        // hold the connection
      }
    },
  }
}

async function subscribeAll(names: string[], options: UpgradeOptions = {}, hub = createHub()) {
  const topics = hub.topics
  const outcomes: unknown[] = []
  const peer = await connect(subscriber(names, outcomes), '/', { hub, upgrade: options })
  const held = JSON.parse(String((await peer.read()).data)) as string[]
  return { outcomes, held, topics, peer }
}

describe('issue 18 #9: topics per connection and topic names are bounded by default', () => {
  it('refuses the 129th topic of a connection with a RangeError that names the option, changing nothing', async () => {
    const names = Array.from({ length: 130 }, (_, i) => `room-${i}`)
    const { outcomes, held, topics } = await subscribeAll(names)
    expect(outcomes.slice(0, 128).every((o) => o === 'ok')).toBe(true)
    for (const refused of outcomes.slice(128)) {
      expect(refused).toBeInstanceOf(RangeError)
      expect(String(refused)).toMatch(/maxTopicsPerConnection/)
    }
    expect(held).toHaveLength(128)
    expect(topics.subscribers('room-128')).toBe(0)
    expect(topics.names()).toHaveLength(128)
  })

  it('takes more with maxTopicsPerConnection, and a topic held already is not a new one', async () => {
    const names = Array.from({ length: 200 }, (_, i) => `room-${i}`)
    const raised = await subscribeAll(names, { maxTopicsPerConnection: 200 })
    expect(raised.held).toHaveLength(200)
    const few = await subscribeAll(['a', 'b', 'a', 'c'], { maxTopicsPerConnection: 2 })
    expect(few.outcomes.slice(0, 3)).toEqual(['ok', 'ok', 'ok'])
    expect(few.outcomes[3]).toBeInstanceOf(RangeError)
    expect(few.held).toEqual(['a', 'b'])
  })

  it('refuses a name over 256 UTF-8 bytes with a RangeError that names the option; maxTopicLength changes it', async () => {
    const longest = 'x'.repeat(256)
    const names = [longest, 'x'.repeat(257), 'é'.repeat(129), '😀'.repeat(64), '😀'.repeat(65)]
    const { outcomes, held } = await subscribeAll(names)
    expect(outcomes[0]).toBe('ok')
    expect(outcomes[3]).toBe('ok')
    for (const refused of [outcomes[1], outcomes[2], outcomes[4]]) {
      expect(refused).toBeInstanceOf(RangeError)
      expect(String(refused)).toMatch(/maxTopicLength/)
    }
    expect(held).toEqual([longest, '😀'.repeat(64)])
    const raised = await subscribeAll(['x'.repeat(1000)], { maxTopicLength: 1000 })
    expect(raised.outcomes).toEqual(['ok'])
  })

  it('refuses bounds that are not whole numbers of 1 or more', () => {
    for (const options of [
      { maxTopicsPerConnection: 0 },
      { maxTopicsPerConnection: 1.5 },
      { maxTopicLength: -1 },
      { maxTopicLength: Number.NaN },
    ]) {
      expect(() => new Upgrader({ serve() {} }, options), JSON.stringify(options)).toThrow(
        RangeError,
      )
    }
  })
})

/** A backplane that records what reaches it. */
class Recording extends SinkOnly {
  readonly seen: string[] = []
  override async subscribe(topic: string): Promise<void> {
    this.seen.push(`subscribe ${topic}`)
  }
  override publish(topic: string, _data: MessageData): void {
    this.seen.push(`publish ${topic}`)
  }
}

describe('issue 18 #10: topic names that are not well-formed Unicode are refused', () => {
  it('refuses a lone surrogate in subscribe (TypeError) and in publish (throws); pairs are fine', async () => {
    const hub = createHub()
    const topics = hub.topics
    const backplane = new Recording()
    await topics.useBackplane(backplane)
    const { outcomes, held } = await subscribeAll(['x\uD800', 'x\uDBFF', '\uDC00x', 'x😀'], {}, hub)
    for (const refused of outcomes.slice(0, 3)) {
      expect(refused).toBeInstanceOf(TypeError)
      expect(String(refused)).toMatch(/well-formed Unicode/)
    }
    expect(outcomes[3]).toBe('ok')
    expect(held).toEqual(['x😀'])
    expect(() => topics.publish('x\uD800', 'm')).toThrow(/well-formed Unicode/)
    expect(() => topics.publish('😀'.slice(0, 1), 'm')).toThrow(TypeError)
    topics.publish('x😀', 'fine')
    expect(backplane.seen).toEqual(['subscribe x😀', 'publish x😀'])
  })

  it('refuses it in conn.publish too', async () => {
    let thrown: unknown
    const peer = await connect({
      async serve(conn: Conn) {
        try {
          conn.publish('room\uDFFF', 'm')
        } catch (err) {
          thrown = err
        }
      },
    })
    await peer.closed
    expect(thrown).toBeInstanceOf(TypeError)
  })
})

// --- #13 ---

describe('issue 18 #13: event handlers never overlap, whenever the runtime reports the end', () => {
  /** Closes in message() before its first await, and records every handler call. */
  function closesInMessage(log: string[], sync = false): EventController {
    return {
      message(conn, message) {
        log.push(`message ${String(message.data)}`)
        void conn.close(4000, 'done')
        if (sync) {
          log.push(`end ${String(message.data)}`)
          return
        }
        return sleep(5).then(() => {
          log.push(`end ${String(message.data)}`)
        })
      },
      close(_conn, err) {
        log.push(`close ${err.code}`)
      },
    }
  }

  it('runs close after message when the runtime ends the connection inside close() (as Bun)', async () => {
    for (const sync of [false, true]) {
      const log: string[] = []
      const socket = await openOn(upgrade(closesInMessage(log, sync)), bunLikeSocket())
      socket.events?.message('a')
      await vi.waitFor(() => expect(log).toContain('close 4000'))
      expect(log, sync ? 'synchronous handler' : 'async handler').toEqual([
        'message a',
        'end a',
        'close 4000',
      ])
    }
  })

  it('runs close after message when the handler closes with no handshake wait (timeout 0)', async () => {
    const log: string[] = []
    const peer = await connect(closesInMessage(log), '/', {
      upgrade: { closeHandshakeTimeout: 0 },
    })
    peer.send('a')
    await peer.closed
    await vi.waitFor(() => expect(log).toContain('close 1006'))
    expect(log).toEqual(['message a', 'end a', 'close 1006'])
  })

  it('holds in the test kit with endsInClose, which ends the connection inside close() as Bun does', async () => {
    const log: string[] = []
    const peer = await connect(closesInMessage(log), '/', { endsInClose: true })
    peer.send('a')
    peer.send('b')
    expect(await peer.closed).toEqual({ code: 4000, reason: 'done', wasClean: false })
    await vi.waitFor(() => expect(log).toContain('close 4000'))
    // 'b' arrived after the end: it is dropped, and close runs once, last.
    expect(log).toEqual(['message a', 'end a', 'close 4000'])
  })

  it('runs a message that arrives while a synchronous handler runs after it, not inside it', async () => {
    const log: string[] = []
    const socket = await openOn(
      upgrade({
        message(_conn, message) {
          log.push(`message ${String(message.data)}`)
          if (message.data === 'first') socket.events?.message('nested')
          log.push(`end ${String(message.data)}`)
        },
      }),
      bunLikeSocket(),
    )
    socket.events?.message('first')
    expect(log).toEqual(['message first', 'end first', 'message nested', 'end nested'])
  })
})

// --- #14 ---

describe('issue 18 #14: a failed store changes nothing', () => {
  /** A socket whose store refuses more than `maxTopics` topics, or data with `tooBig`. */
  function fussyStore(maxTopics: number): ManualSocket {
    const socket = bunLikeSocket({
      persist(snapshot: ConnSnapshot) {
        if (snapshot.topics.length > maxTopics) throw new RangeError('attachment too large')
        if ((snapshot.data as { tooBig?: boolean } | undefined)?.tooBig) {
          throw new RangeError('attachment too large')
        }
        socket.stored.push(snapshot)
      },
    })
    return socket
  }

  it('subscribe() rejects (never throws) when the store refuses, and the topic is not joined', async () => {
    const hub = createHub()
    const topics = hub.topics
    let connection: Conn | undefined
    const socket = await openOn(
      upgrade({
        open(conn) {
          connection = conn
        },
        message() {},
      }),
      fussyStore(2),
      hub,
    )
    const conn = connection as Conn
    await conn.subscribe('a')
    await conn.subscribe('b')
    let outcome: unknown
    expect(() => {
      outcome = conn.subscribe('c')
    }).not.toThrow()
    await expect(outcome).rejects.toThrow('attachment too large')
    expect([...conn.topics]).toEqual(['a', 'b'])
    expect(topics.subscribers('c')).toBe(0)
    expect(socket.stored.at(-1)?.topics).toEqual(['a', 'b'])
    // The connection is not stuck: a later assignment stores.
    conn.data = { name: 'alice' }
    expect(socket.stored.at(-1)).toMatchObject({ data: { name: 'alice' }, topics: ['a', 'b'] })
    expect(conn.data).toEqual({ name: 'alice' })
  })

  it('set data throws and keeps the old value when the store refuses', async () => {
    let connection: Conn | undefined
    const socket = await openOn(
      upgrade({
        open(conn) {
          connection = conn
          conn.data = { name: 'alice' }
        },
        message() {},
      }),
      fussyStore(10),
    )
    const conn = connection as Conn
    expect(() => {
      conn.data = { tooBig: true }
    }).toThrow('attachment too large')
    expect(conn.data).toEqual({ name: 'alice' })
    expect(socket.stored.at(-1)?.data).toEqual({ name: 'alice' })
  })

  it('unsubscribe() throws and keeps the topic when the store refuses', async () => {
    let connection: Conn | undefined
    let refuse = false
    const hub = createHub()
    const topics = hub.topics
    await openOn(
      upgrade({
        open(conn) {
          connection = conn
        },
        message() {},
      }),
      bunLikeSocket({
        persist() {
          if (refuse) throw new Error('storage unavailable')
        },
      }),
      hub,
    )
    const conn = connection as Conn
    await conn.subscribe('a')
    refuse = true
    expect(() => conn.unsubscribe('a')).toThrow('storage unavailable')
    expect([...conn.topics]).toEqual(['a'])
    expect(topics.subscribers('a')).toBe(1)
  })
})

// --- #23 ---

describe('issue 18 #23: a shutdown waits for serve and close handlers, within its deadline', () => {
  it('resolves only once serve has finished its work after the loop', async () => {
    const hub = createHub()
    const registry = hub.connections
    let finished = false
    const peer = await connect(
      {
        async serve(conn: Conn) {
          for await (const _ of conn) {
            // read to the end
          }
          await sleep(200)
          finished = true
        },
      },
      '/',
      { hub },
    )
    await tick()
    await registry.shutdown({ timeout: 5000 })
    expect(finished).toBe(true)
    expect((await peer.closed).code).toBe(1001)
  })

  it('resolves only once the close handler has finished', async () => {
    const hub = createHub()
    const registry = hub.connections
    const log: string[] = []
    await connect(
      {
        message() {},
        async close(_conn: Conn, err: CloseError) {
          log.push(`close ${err.code}`)
          await sleep(200)
          log.push('close done')
        },
      },
      '/',
      { hub },
    )
    await tick()
    await registry.shutdown({ timeout: 5000 })
    expect(log).toEqual(['close 1001', 'close done'])
  })

  it('still resolves by its deadline when serve never settles', async () => {
    const hub = createHub()
    const registry = hub.connections
    await connect({ serve: () => new Promise<void>(() => {}) }, '/', { hub })
    await tick()
    const started = Date.now()
    await registry.shutdown({ timeout: 300 })
    const elapsed = Date.now() - started
    expect(elapsed).toBeGreaterThanOrEqual(290)
    expect(elapsed).toBeLessThan(1500)
  })
})

// --- #25 ---

describe('issue 18 #25: a shutdown waits for upgrades on their way to open', () => {
  /** An adapter that opens the socket `delay` ms after it answered, as Deno does (onopen). */
  function lateOpening(hub: Hub, delay: number) {
    const socket = bunLikeSocket()
    const state = { opened: false, request: undefined as UpgradeRequest | undefined }
    // A real close: the end comes once the peer answered, a moment later.
    socket.close = (code, reason) => {
      socket.closes.push([code, reason])
      setTimeout(() => socket.events?.closed(code, reason, true), 10)
    }
    const adapter: Adapter = {
      name: 'late',
      hub: () => hub,
      upgrade(_c, request) {
        state.request = request
        if (delay >= 0) {
          setTimeout(() => {
            state.opened = true
            socket.events = request.open(socket)
          }, delay)
        }
        return new Response(null, { status: 200 })
      },
    }
    const app = new Hono().get(
      '/',
      upgrade({
        async serve(conn: Conn) {
          for await (const _ of conn) {
            // read to the end
          }
        },
      }),
    )
    return {
      socket,
      state,
      request: () => app.request('/', { headers: HANDSHAKE }, { [ADAPTER]: adapter, [HUB]: hub }),
    }
  }

  it('does not resolve before the socket opened; it closes it then with 1001', async () => {
    const hub = createHub()
    const registry = hub.connections
    const late = lateOpening(hub, 150)
    expect((await late.request()).status).toBe(200)
    const started = Date.now()
    await registry.shutdown({ timeout: 5000 })
    expect(late.state.opened).toBe(true)
    expect(late.socket.closes).toEqual([[1001, 'Server shutting down']])
    expect(Date.now() - started).toBeGreaterThanOrEqual(140)
    expect(registry.size).toBe(0)
  })

  it('stops waiting for an upgrade the adapter abandons', async () => {
    const hub = createHub()
    const registry = hub.connections
    const late = lateOpening(hub, -1)
    expect((await late.request()).status).toBe(200)
    setTimeout(() => late.state.request?.abandon(), 50)
    const started = Date.now()
    await registry.shutdown({ timeout: 5000 })
    expect(Date.now() - started).toBeLessThan(1000)
  })

  it('stops waiting when the app answered something other than the upgrade (the test kit abandons it)', async () => {
    const hub = createHub()
    const registry = hub.connections
    const app = new Hono()
    app.use(async (c, next) => {
      await next()
      c.res = new Response('rewritten', { status: 500 })
    })
    app.get('/', upgrade({ serve() {} }))
    await expect(connect(app, '/', { hub })).rejects.toThrow(/500/)
    const started = Date.now()
    await registry.shutdown({ timeout: 5000 })
    expect(Date.now() - started).toBeLessThan(1000)
  })
})

// --- #26 ---

describe("issue 18 #26: a serve loop that sees the server's own close ends quietly", () => {
  for (const how of ['for await', 'read()'] as const) {
    it(`logs nothing when a shutdown closes with 1012 (${how})`, async () => {
      const hub = createHub()
      const registry = hub.connections
      const logger = { error: vi.fn() }
      const onEnd: string[] = []
      const peer = await connect(
        {
          async serve(conn: Conn) {
            if (how === 'for await') {
              for await (const _ of conn) {
                // read to the end
              }
              onEnd.push('loop ended')
            } else {
              for (;;) await conn.read()
            }
          },
        },
        '/',
        { hub, upgrade: { logger } },
      )
      await tick()
      await registry.shutdown({ code: 1012, reason: 'Service restart', timeout: 5000 })
      expect(await peer.closed).toEqual({ code: 1012, reason: 'Service restart', wasClean: true })
      await tick()
      expect(logger.error).not.toHaveBeenCalled()
      if (how === 'for await') expect(onEnd).toEqual(['loop ended'])
      expect(peer.closeFrames).toHaveLength(1)
    })
  }

  it("ends the loop quietly when the app closes with its own code, and still throws for the peer's", async () => {
    const logger = { error: vi.fn() }
    const onError = vi.fn()
    const ends: string[] = []
    const app = new Hono()
    app.get(
      '/',
      upgrade(
        {
          async serve(conn: Conn) {
            try {
              for await (const message of conn) {
                if (message.data === 'leave') setTimeout(() => void conn.close(4000, 'bye'), 5)
              }
              ends.push('quiet')
            } catch (err) {
              ends.push(`threw ${(err as CloseError).code}`)
              throw err
            }
          },
          onError,
        },
        { logger },
      ),
    )
    const ours = await connect(app)
    ours.send('leave')
    expect((await ours.closed).code).toBe(4000)
    const theirs = await connect(app)
    theirs.close(4001, 'peer leaves')
    await theirs.closed
    await vi.waitFor(() => expect(ends).toHaveLength(2))
    expect(ends).toEqual(['quiet', 'threw 4001'])
    expect(onError).toHaveBeenCalledOnce()
    expect(logger.error).not.toHaveBeenCalled()
  })
})
