/**
 * Topics in the core: fan-out, order, the slow-subscriber bound, a runtime's own topic tree and
 * the backplane port, through the test kit and small fakes.
 */
import { Hono } from 'hono'
import { describe, expect, it, vi } from 'vitest'
import {
  ADAPTER,
  type Adapter,
  type Backplane,
  type BackplaneSink,
  createHub,
  HUB,
  type RuntimeSocket,
  type SocketEvents,
  type TopicTree,
} from '../src/adapter.js'
import {
  type Conn,
  type EventController,
  getHub,
  type Hub,
  type MessageData,
  Topics,
  type UpgradeOptions,
  upgrade,
} from '../src/index.js'
import { connect, hibernatable, request, type TestPeer } from '../src/testing.js'

const quiet = { error: vi.fn() }
const tick = () => new Promise((resolve) => setTimeout(resolve, 0))

/**
 * A room app: `GET /room/:room?name=` joins the room (the peer gets `joined` once the
 * subscription counts) and publishes what it receives to the room; `POST /room/:room` publishes
 * the body from outside any connection.
 */
function roomApp(options: UpgradeOptions = {}, hub: Hub = createHub()) {
  const topics = hub.topics
  const conns = new Map<string, Conn>()
  const app = new Hono()
  app.get(
    '/room/:room',
    upgrade(
      {
        async serve(conn, c) {
          const room = c.req.param('room') as string
          conns.set(c.req.query('name') ?? 'anonymous', conn)
          await conn.subscribe(room)
          await conn.send('joined')
          for await (const msg of conn) conn.publish(room, msg.data)
        },
      },
      { logger: quiet, ...options },
    ),
  )
  app.post('/room/:room', async (c) => {
    const body = c.req.header('content-type')?.startsWith('text/')
      ? await c.req.text()
      : new Uint8Array(await c.req.arrayBuffer())
    getHub(c).topics.publish(c.req.param('room'), body)
    return c.body(null, 204)
  })
  const join = async (room: string, name: string) => {
    const peer = await connect(app, `/room/${room}?name=${name}`, { hub })
    expect(await peer.read()).toEqual({ type: 'text', data: 'joined' })
    return peer
  }
  return { app, hub, topics, conns, join }
}

/** Reads `count` messages and returns their data. */
async function readAll(peer: TestPeer, count: number): Promise<MessageData[]> {
  const out: MessageData[] = []
  for (let i = 0; i < count; i++) out.push((await peer.read()).data)
  return out
}

const numbered = (count: number, prefix = 'm') =>
  Array.from({ length: count }, (_, i) => `${prefix}${i}`)

describe('topics: fan-out', () => {
  it('delivers a publisher’s messages to every other subscriber, in order, once, and not to itself', async () => {
    const { app, hub, join } = roomApp()
    const [alice, bob, carol] = [
      await join('r', 'alice'),
      await join('r', 'bob'),
      await join('r', 'carol'),
    ]
    const messages = numbered(200)
    for (const message of messages) alice.send(message)
    expect(await readAll(bob, 200)).toEqual(messages)
    expect(await readAll(carol, 200)).toEqual(messages)
    // A sentinel from outside comes next for everyone: nothing was delivered twice, and the
    // sender got none of its own messages.
    await request(
      app,
      '/room/r',
      {
        method: 'POST',
        body: 'end',
        headers: { 'content-type': 'text/plain' },
      },
      { hub },
    )
    for (const peer of [alice, bob, carol]) {
      expect(await peer.read()).toEqual({ type: 'text', data: 'end' })
    }
  })

  it('keeps each publisher’s order when several publish at once', async () => {
    const { join } = roomApp()
    const a = await join('r', 'a')
    const b = await join('r', 'b')
    const listener = await join('r', 'listener')
    for (let i = 0; i < 50; i++) {
      a.send(`a${i}`)
      b.send(`b${i}`)
    }
    const got = (await readAll(listener, 100)) as string[]
    expect(got.filter((m) => m.startsWith('a'))).toEqual(numbered(50, 'a'))
    expect(got.filter((m) => m.startsWith('b'))).toEqual(numbered(50, 'b'))
    expect(new Set(got).size).toBe(100)
  })

  it('keeps text as text and bytes as the exact bytes of a view', async () => {
    const hub = createHub()
    const topics = hub.topics
    const peer = await connect(
      {
        async serve(conn: Conn) {
          await conn.subscribe('t')
          await conn.send('joined')
          await conn.read()
        },
      },
      '/',
      { hub },
    )
    await peer.read()
    const buffer = new Uint8Array(64).map((_, i) => i)
    const view = buffer.subarray(10, 20)
    for (const data of ['', 'héllo 😀', view, new Uint8Array(0), '{"json":true}']) {
      topics.publish('t', data)
    }
    expect(await peer.read()).toEqual({ type: 'text', data: '' })
    expect(await peer.read()).toEqual({ type: 'text', data: 'héllo 😀' })
    const bytes = await peer.read()
    expect(bytes.type).toBe('binary')
    expect(bytes.data).toEqual(new Uint8Array([10, 11, 12, 13, 14, 15, 16, 17, 18, 19]))
    expect((bytes.data as Uint8Array).buffer.byteLength).toBe(10)
    expect(await peer.read()).toEqual({ type: 'binary', data: new Uint8Array(0) })
    expect(await peer.read()).toEqual({ type: 'text', data: '{"json":true}' })
  })

  it('refuses data that is neither a string nor a Uint8Array, and an empty topic', async () => {
    const hub = createHub()
    const topics = hub.topics
    expect(() => topics.publish('t', new ArrayBuffer(4) as never)).toThrow(TypeError)
    expect(() => topics.publish('t', 42 as never)).toThrow(/string or a Uint8Array/)
    let subscribeError: unknown
    const peer = await connect(
      {
        async serve(conn: Conn) {
          subscribeError = await conn.subscribe('').catch((err: unknown) => err)
        },
      },
      '/',
      { hub },
    )
    await peer.closed
    expect(subscribeError).toBeInstanceOf(TypeError)
  })

  it('reaches every subscriber from an HTTP route, text and binary', async () => {
    const { app, hub, join } = roomApp()
    const peers = [await join('lobby', 'a'), await join('lobby', 'b')]
    const other = await join('elsewhere', 'c')
    const text = await request(
      app,
      '/room/lobby',
      {
        method: 'POST',
        body: 'announcement',
        headers: { 'content-type': 'text/plain' },
      },
      { hub },
    )
    expect(text.status).toBe(204)
    await request(
      app,
      '/room/lobby',
      {
        method: 'POST',
        body: new Uint8Array([0, 255, 7]),
        headers: { 'content-type': 'application/octet-stream' },
      },
      { hub },
    )
    for (const peer of peers) {
      expect(await peer.read()).toEqual({ type: 'text', data: 'announcement' })
      expect(await peer.read()).toEqual({ type: 'binary', data: new Uint8Array([0, 255, 7]) })
    }
    await request(
      app,
      '/room/elsewhere',
      {
        method: 'POST',
        body: 'only c',
        headers: { 'content-type': 'text/plain' },
      },
      { hub },
    )
    expect(await other.read()).toEqual({ type: 'text', data: 'only c' })
  })

  it('keeps published messages in order with the connection’s own sends', async () => {
    const hub = createHub()
    const topics = hub.topics
    const peer = await connect(
      {
        async serve(conn: Conn) {
          await conn.subscribe('t')
          for (let i = 0; i < 20; i++) {
            void conn.send(`send${i}`)
            topics.publish('t', `publish${i}`)
          }
          await conn.read()
        },
      },
      '/',
      { hub },
    )
    const expected = numbered(20).flatMap((_, i) => [`send${i}`, `publish${i}`])
    expect(await readAll(peer, 40)).toEqual(expected)
  })

  it('counts subscribers, and subscribing twice or leaving twice is harmless', async () => {
    const hub = createHub()
    const topics = hub.topics
    let conn: Conn | undefined
    const peer = await connect(
      {
        async serve(c: Conn) {
          conn = c
          await c.subscribe('a')
          await c.subscribe('a')
          await c.subscribe('b')
          await c.send('ready')
          await c.read()
        },
      },
      '/',
      { hub },
    )
    await peer.read()
    expect(topics.subscribers('a')).toBe(1)
    expect(topics.subscribers('b')).toBe(1)
    expect(topics.subscribers('none')).toBe(0)
    expect(topics.names().sort()).toEqual(['a', 'b'])
    expect([...(conn as Conn).topics].sort()).toEqual(['a', 'b'])
    conn?.unsubscribe('a')
    conn?.unsubscribe('a')
    conn?.unsubscribe('never')
    expect(topics.subscribers('a')).toBe(0)
    expect(topics.names()).toEqual(['b'])
    expect([...(conn as Conn).topics]).toEqual(['b'])
    topics.publish('a', 'not for you')
    topics.publish('b', 'for you')
    expect(await peer.read()).toEqual({ type: 'text', data: 'for you' })
  })
})

describe('topics: a closed connection leaves all its topics', () => {
  it.each([
    ['closes', (peer: TestPeer) => peer.close(1000)],
    ['vanishes', (peer: TestPeer) => peer.vanish()],
    ['faults', (peer: TestPeer) => peer.fault(1007, 'invalid UTF-8')],
  ])('when the peer %s', async (_, end) => {
    const hub = createHub()
    const topics = hub.topics
    let conn: Conn | undefined
    const peer = await connect(
      {
        async serve(c: Conn) {
          conn = c
          await Promise.all([c.subscribe('a'), c.subscribe('b')])
          await c.send('ready')
          for await (const _ of c) {
            // until the end
          }
        },
      },
      '/',
      { hub, upgrade: { logger: quiet } },
    )
    const stays = await connect(
      {
        async serve(c: Conn) {
          await c.subscribe('a')
          await c.send('ready')
          await c.read()
        },
      },
      '/',
      { hub },
    )
    await peer.read()
    await stays.read()
    expect(topics.subscribers('a')).toBe(2)
    end(peer)
    await peer.closed
    await vi.waitFor(() => expect(conn?.state).toBe('closed'))
    expect(topics.subscribers('a')).toBe(1)
    expect(topics.subscribers('b')).toBe(0)
    expect(topics.names()).toEqual(['a'])
    expect(conn?.topics.size).toBe(0)
    // Too late to join anything, and leaving after the end changes nothing.
    await conn?.subscribe('c')
    conn?.unsubscribe('a')
    expect(topics.names()).toEqual(['a'])
    expect(topics.subscribers('a')).toBe(1)
    topics.publish('a', 'still here')
    expect(await stays.read()).toEqual({ type: 'text', data: 'still here' })
  })

  it('when serve closes it, and a publish from the close path still reaches the others', async () => {
    const hub = createHub()
    const topics = hub.topics
    const room: EventController<{ name: string }> = {
      async open(conn, c) {
        conn.data = { name: c.req.query('name') ?? '?' }
        await conn.subscribe('room')
        conn.publish('room', `${conn.data.name} joined`)
      },
      message(conn, msg) {
        if (msg.data === 'bye') return conn.close(1000, 'bye')
        conn.publish('room', `${conn.data.name}: ${msg.data}`)
      },
      close(conn) {
        conn.publish('room', `${conn.data.name} left`)
      },
    }
    const app = new Hono().get('/', upgrade(room))
    const alice = await connect(app, '/?name=alice', { hub })
    await vi.waitFor(() => expect(topics.subscribers('room')).toBe(1))
    const bob = await connect(app, '/?name=bob', { hub })
    expect(await alice.read()).toEqual({ type: 'text', data: 'bob joined' })
    bob.send('hi')
    expect(await alice.read()).toEqual({ type: 'text', data: 'bob: hi' })
    bob.send('bye')
    expect(await bob.closed).toMatchObject({ code: 1000, reason: 'bye' })
    expect(await alice.read()).toEqual({ type: 'text', data: 'bob left' })
    expect(topics.subscribers('room')).toBe(1)
  })
})

describe('topics: the slow-subscriber bound', () => {
  /** One slow peer that stops reading and two fast ones, on a 1 KiB publish bound. */
  async function slowRoom(slowSubscriber: 'close' | 'drop') {
    const onError = vi.fn()
    const { topics, conns, join } = roomApp({
      maxPublishBuffer: 1024,
      slowSubscriber,
      logger: { error: onError },
    })
    const slow = await join('r', 'slow')
    const fast = [await join('r', 'fast1'), await join('r', 'fast2')]
    slow.stopReading()
    const message = 'x'.repeat(100)
    const started = performance.now()
    for (let i = 0; i < 100; i++) topics.publish('r', `${i}:${message}`)
    const publishMs = performance.now() - started
    return { topics, conns, slow, fast, message, publishMs, onError }
  }

  it("closes a subscriber past maxPublishBuffer with 1008 and says why ('close'); the others get everything", async () => {
    const { topics, conns, slow, fast, message, publishMs } = await slowRoom('close')
    expect(publishMs).toBeLessThan(100)
    const closed = await slow.closed
    expect(closed.code).toBe(1008)
    expect(closed.reason).toMatch(
      /^Subscriber too slow: over 1024 bytes of published messages unsent/,
    )
    expect(conns.get('slow')?.state).toBe('closed')
    for (const peer of fast) {
      expect(await readAll(peer, 100)).toEqual(numbered(100).map((_, i) => `${i}:${message}`))
    }
    expect(conns.get('fast1')?.bufferedAmount).toBe(0)
    expect(topics.subscribers('r')).toBe(2)
  })

  it("drops and counts the messages of a subscriber past maxPublishBuffer ('drop'), and keeps it", async () => {
    const { topics, conns, slow, fast, message, publishMs } = await slowRoom('drop')
    expect(publishMs).toBeLessThan(100)
    const conn = conns.get('slow') as Conn
    expect(conn.state).toBe('open')
    // 100 bytes and a prefix each: the bound holds about ten before the drops start.
    expect(conn.droppedMessages).toBeGreaterThan(80)
    expect(conn.droppedMessages).toBeLessThan(95)
    const kept = 100 - conn.droppedMessages
    slow.startReading()
    const got = await readAll(slow, kept)
    expect(got).toEqual(numbered(kept).map((_, i) => `${i}:${message}`))
    for (const peer of fast) expect(await readAll(peer, 100)).toHaveLength(100)
    topics.publish('r', 'after')
    expect(await slow.read()).toEqual({ type: 'text', data: 'after' })
    expect(conns.get('fast2')?.droppedMessages).toBe(0)
  })

  it('refuses an unknown policy', () => {
    expect(() => upgrade({ serve() {} }, { slowSubscriber: 'wait' as never })).toThrow(RangeError)
  })
})

describe('topics: a room controller in the test kit', () => {
  const room: EventController<{ name: string; room: string }> = {
    async open(conn, c) {
      conn.data = { name: c.req.query('name') ?? '?', room: c.req.query('room') ?? 'lobby' }
      await conn.subscribe(conn.data.room)
      await conn.send(`welcome ${conn.data.name}`)
    },
    message(conn, msg) {
      conn.publish(conn.data.room, `${conn.data.name}: ${msg.data}`)
    },
  }

  it('survives a hibernation between every event: the topics come back from the snapshot', async () => {
    const object = hibernatable(() => room, { evictEveryEvent: true })
    const alice = await object.connect({ headers: {} })
    expect((await alice.read()).data).toBe('welcome ?')
    expect(alice.persisted?.topics).toEqual(['lobby'])
    const bob = await object.connect()
    await bob.read()
    bob.send('hello')
    expect(await alice.read()).toEqual({ type: 'text', data: '?: hello' })
    expect(object.evictions).toBeGreaterThan(0)
    expect(object.topics.subscribers('lobby')).toBe(2)
  })
})

// --- a runtime's own topic tree (as Bun's), faked ---

/**
 * A fake of Bun's topic tree: a socket subscribes in the tree, `tree.publish` reaches every
 * subscribed socket, `socket.publish` every one but the sender and only when the sender holds
 * the topic (as uWS does), and a closed socket leaves the tree.
 */
class FakeTree implements TopicTree {
  readonly subscribed = new Map<string, Set<FakeSocket>>()
  treePublishes = 0
  socketPublishes = 0
  publish(topic: string, data: MessageData): void {
    this.treePublishes++
    for (const socket of this.subscribed.get(topic) ?? []) {
      if (!socket.closed) socket.received.push(data)
    }
  }
}

class FakeSocket implements RuntimeSocket {
  readonly received: MessageData[] = []
  events: SocketEvents | undefined
  readonly emitsDrain = true
  bufferedAmount = 0
  closed = false
  closeFrame: [number, string] | undefined
  constructor(readonly tree: FakeTree) {}
  send(data: MessageData) {
    this.received.push(data)
    return false
  }
  close(code: number, reason: string) {
    this.closeFrame = [code, reason]
    this.end(code, reason)
  }
  end(code = 1000, reason = '') {
    if (this.closed) return
    this.closed = true
    // Like uWS: the close handler runs while the socket is still in the tree.
    this.events?.closed(code, reason)
    for (const set of this.tree.subscribed.values()) set.delete(this)
  }
  subscribe(topic: string) {
    if (this.closed) throw new Error('subscribe on a closed socket')
    const set = this.tree.subscribed.get(topic) ?? new Set()
    this.tree.subscribed.set(topic, set)
    set.add(this)
  }
  unsubscribe(topic: string) {
    this.tree.subscribed.get(topic)?.delete(this)
  }
  publish(topic: string, data: MessageData) {
    const set = this.tree.subscribed.get(topic)
    if (this.closed || !set?.has(this)) return
    this.tree.socketPublishes++
    for (const socket of set) if (socket !== this) socket.received.push(data)
  }
}

/** Opens connections of `app` on a fake runtime whose sockets live in `tree`. */
function treeRuntime(tree: FakeTree, hub: Hub) {
  const adapter: Adapter = {
    name: 'fake-tree',
    hub: () => hub,
    upgrade(_c, request) {
      const socket = new FakeSocket(tree)
      socket.events = request.open(socket)
      opened.push(socket)
      return new Response(null, { status: 200 })
    },
  }
  const opened: FakeSocket[] = []
  return {
    async open(app: Hono, path: string): Promise<FakeSocket> {
      const response = await app.request(
        `http://localhost${path}`,
        {
          headers: {
            Upgrade: 'websocket',
            Connection: 'Upgrade',
            'Sec-WebSocket-Version': '13',
            'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
          },
        },
        { [ADAPTER]: adapter, [HUB]: hub },
      )
      expect(response.status).toBe(200)
      const socket = opened.at(-1) as FakeSocket
      await vi.waitFor(() => expect(socket.received).toContain('joined'))
      socket.received.length = 0
      return socket
    },
  }
}

describe('topics: through a runtime’s own topic tree', () => {
  it('fans out once per tree, skips the sender, and mixes with sockets outside the tree', async () => {
    const tree = new FakeTree()
    const { app, hub, topics, join } = roomApp()
    const runtime = treeRuntime(tree, hub)
    const a = await runtime.open(app, '/room/r?name=a')
    const b = await runtime.open(app, '/room/r?name=b')
    const outside = await join('r', 'outside')
    expect(topics.subscribers('r')).toBe(3)
    a.events?.message('from a')
    expect(await outside.read()).toEqual({ type: 'text', data: 'from a' })
    expect(b.received).toEqual(['from a'])
    expect(a.received).toEqual([])
    expect(tree.socketPublishes).toBe(1)
    outside.send('from outside')
    await vi.waitFor(() => expect(b.received).toEqual(['from a', 'from outside']))
    expect(a.received).toEqual(['from outside'])
    expect(tree.treePublishes).toBe(1)
  })

  it('reaches the tree from a sender that does not hold the topic', async () => {
    const tree = new FakeTree()
    const hub = createHub()
    const app = new Hono()
    app.get(
      '/sub',
      upgrade({
        async serve(conn: Conn) {
          await conn.subscribe('t')
          await conn.send('joined')
          await conn.read()
        },
      }),
    )
    app.get(
      '/pub',
      upgrade({
        async serve(conn: Conn) {
          await conn.send('joined')
          for await (const msg of conn) conn.publish('t', msg.data)
        },
      }),
    )
    const runtime = treeRuntime(tree, hub)
    const subscriber = await runtime.open(app, '/sub')
    const publisher = await runtime.open(app, '/pub')
    publisher.events?.message('hello')
    await vi.waitFor(() => expect(subscriber.received).toEqual(['hello']))
    expect(publisher.received).toEqual([])
    expect(tree.treePublishes).toBe(1)
  })

  it('reaches the tree from a close handler, once the sender has left', async () => {
    const tree = new FakeTree()
    const hub = createHub()
    const app = new Hono().get(
      '/',
      upgrade({
        async open(conn: Conn) {
          await conn.subscribe('room')
          await conn.send('joined')
        },
        message() {},
        close(conn: Conn) {
          conn.publish('room', 'left')
        },
      }),
    )
    const runtime = treeRuntime(tree, hub)
    const leaving = await runtime.open(app, '/')
    const staying = await runtime.open(app, '/')
    leaving.end(1000)
    await vi.waitFor(() => expect(staying.received).toEqual(['left']))
    expect(leaving.received).toEqual([])
  })

  it('closes a tree subscriber past maxPublishBuffer with 1008 within a turn, and spares the others', async () => {
    const tree = new FakeTree()
    const { app, hub, topics } = roomApp({ maxPublishBuffer: 1000 })
    const runtime = treeRuntime(tree, hub)
    const slow = await runtime.open(app, '/room/r?name=slow')
    const fast = await runtime.open(app, '/room/r?name=fast')
    slow.bufferedAmount = 1001
    topics.publish('r', 'one')
    topics.publish('r', 'two')
    // The tree sent both at once; the bound is checked once the turn is over.
    expect(slow.received).toEqual(['one', 'two'])
    expect(slow.closed).toBe(false)
    await tick()
    expect(slow.closeFrame).toEqual([
      1008,
      'Subscriber too slow: over 1000 bytes of published messages unsent',
    ])
    topics.publish('r', 'three')
    expect(fast.received).toEqual(['one', 'two', 'three'])
    expect(fast.closed).toBe(false)
    expect(topics.subscribers('r')).toBe(1)
  })

  it("leaves the tree alone with slowSubscriber 'drop': the core sends, and counts what it drops", async () => {
    const tree = new FakeTree()
    const { app, hub, topics, conns } = roomApp({ maxPublishBuffer: 1000, slowSubscriber: 'drop' })
    const runtime = treeRuntime(tree, hub)
    const slow = await runtime.open(app, '/room/r?name=slow')
    expect(tree.subscribed.size).toBe(0)
    topics.publish('r', 'one')
    slow.bufferedAmount = 1001
    topics.publish('r', 'two')
    expect(slow.received).toEqual(['one'])
    expect(conns.get('slow')?.droppedMessages).toBe(1)
    expect(tree.treePublishes).toBe(0)
  })

  it('counts the tree’s subscribers, and a closed socket that unsubscribes leaves once', async () => {
    const tree = new FakeTree()
    const hub = createHub()
    const topics = hub.topics
    let closedConn: Conn | undefined
    const app = new Hono().get(
      '/',
      upgrade(
        {
          async serve(conn: Conn) {
            await conn.subscribe('t')
            await conn.send('joined')
            try {
              await conn.read()
            } finally {
              closedConn = conn
              // A common cleanup: harmless once the connection has left every topic.
              conn.unsubscribe('t')
            }
          },
        },
        { logger: quiet },
      ),
    )
    const runtime = treeRuntime(tree, hub)
    const sockets = [
      await runtime.open(app, '/'),
      await runtime.open(app, '/'),
      await runtime.open(app, '/'),
    ]
    expect(topics.subscribers('t')).toBe(3)
    sockets[0]?.end(1006)
    await vi.waitFor(() => expect(closedConn).toBeDefined())
    await tick()
    expect(topics.subscribers('t')).toBe(2)
    topics.publish('t', 'still delivered')
    expect(sockets[1]?.received).toEqual(['still delivered'])
    expect(sockets[2]?.received).toEqual(['still delivered'])
  })
})

// --- the backplane port ---

/** A backplane double: it records every call; subscriptions are confirmed by hand or at once. */
class FakeBackplane implements Backplane {
  readonly calls: string[] = []
  readonly published: [string, MessageData][] = []
  sink!: BackplaneSink
  autoConfirm = true
  readonly #pending = new Map<string, () => void>()
  failPublish = false
  failSubscribe = false

  start(sink: BackplaneSink): void {
    this.sink = sink
    this.calls.push('start')
  }
  subscribe(topic: string): Promise<void> {
    this.calls.push(`subscribe ${topic}`)
    if (this.failSubscribe) return Promise.reject(new Error('engine down'))
    if (this.autoConfirm) return Promise.resolve()
    return new Promise((resolve) => this.#pending.set(topic, resolve))
  }
  confirm(topic: string): void {
    this.#pending.get(topic)?.()
    this.#pending.delete(topic)
  }
  async unsubscribe(topic: string): Promise<void> {
    this.calls.push(`unsubscribe ${topic}`)
  }
  publish(topic: string, data: MessageData): void {
    if (this.failPublish) throw new Error('engine down')
    this.published.push([topic, data])
  }
  async close(): Promise<void> {
    this.calls.push('close')
  }
}

describe('topics: the backplane port', () => {
  it('subscribes a topic on its first local subscriber and unsubscribes it on the last', async () => {
    const backplane = new FakeBackplane()
    const { topics, conns, join } = roomApp()
    await topics.useBackplane(backplane)
    const a = await join('r', 'a')
    const b = await join('r', 'b')
    await join('other', 'c')
    expect(backplane.calls).toEqual(['start', 'subscribe r', 'subscribe other'])
    a.close(1000)
    await a.closed
    await tick()
    expect(backplane.calls).toHaveLength(3)
    b.vanish()
    await vi.waitFor(() => expect(backplane.calls).toContain('unsubscribe r'))
    conns.get('c')?.unsubscribe('other')
    expect(backplane.calls).toEqual([
      'start',
      'subscribe r',
      'subscribe other',
      'unsubscribe r',
      'unsubscribe other',
    ])
    // Back again: subscribed again.
    await join('r', 'd')
    expect(backplane.calls.at(-1)).toBe('subscribe r')
  })

  it('resolves conn.subscribe only once the backplane confirmed the subscription', async () => {
    const backplane = new FakeBackplane()
    backplane.autoConfirm = false
    const { topics, app, hub } = roomApp()
    await topics.useBackplane(backplane)
    const first = await connect(app, '/room/r?name=a', { hub })
    const second = await connect(app, '/room/r?name=b', { hub })
    let answered = false
    void first.read().then(() => {
      answered = true
    })
    await vi.waitFor(() => expect(topics.subscribers('r')).toBe(2))
    await tick()
    // Counted locally at once, but not confirmed: neither subscribe() resolved.
    expect(answered).toBe(false)
    expect(backplane.calls.filter((c) => c === 'subscribe r')).toHaveLength(1)
    backplane.confirm('r')
    await vi.waitFor(() => expect(answered).toBe(true))
    expect(await second.read()).toEqual({ type: 'text', data: 'joined' })
  })

  it('publishes each message once to the backplane, after local delivery, and delivers what it brings', async () => {
    const backplane = new FakeBackplane()
    const { topics, app, hub, join } = roomApp()
    await topics.useBackplane(backplane)
    const a = await join('r', 'a')
    const b = await join('r', 'b')
    a.send('from a')
    expect(await b.read()).toEqual({ type: 'text', data: 'from a' })
    await request(
      app,
      '/room/r',
      {
        method: 'POST',
        body: 'from http',
        headers: { 'content-type': 'text/plain' },
      },
      { hub },
    )
    expect(backplane.published).toEqual([
      ['r', 'from a'],
      ['r', 'from http'],
    ])
    // From another instance: every local subscriber gets it, the bytes intact.
    backplane.sink.message('r', new Uint8Array([1, 2, 3]))
    backplane.sink.message('nobody-here', 'dropped')
    expect(await b.read()).toEqual({ type: 'text', data: 'from http' })
    expect(await b.read()).toEqual({ type: 'binary', data: new Uint8Array([1, 2, 3]) })
    expect(await a.read()).toEqual({ type: 'text', data: 'from http' })
    expect(await a.read()).toEqual({ type: 'binary', data: new Uint8Array([1, 2, 3]) })
    expect(backplane.sink.topics()).toEqual(['r'])
  })

  it('reports an outage once, keeps local delivery going, and fires restore when it is back', async () => {
    const backplane = new FakeBackplane()
    const onError = vi.fn()
    const hub = createHub({ onError })
    const topics = hub.topics
    const restores = vi.fn()
    topics.addEventListener('restore', restores)
    const { join } = roomApp({}, hub)
    await topics.useBackplane(backplane)
    const a = await join('r', 'a')
    const b = await join('r', 'b')

    backplane.failPublish = true
    backplane.sink.down(new Error('connection lost'))
    backplane.sink.down(new Error('still lost'))
    for (let i = 0; i < 5; i++) a.send(`during ${i}`)
    expect(await readAll(b, 5)).toEqual(numbered(5, 'during '))
    backplane.failSubscribe = true
    // A subscription that fails does not fail conn.subscribe(): the peer still gets 'joined'.
    await join('new-topic', 'c')
    expect(onError).toHaveBeenCalledOnce()
    expect(onError.mock.calls[0]?.[0]).toMatchObject({ message: 'connection lost' })
    expect(restores).not.toHaveBeenCalled()

    backplane.failPublish = false
    backplane.failSubscribe = false
    backplane.sink.up()
    expect(restores).toHaveBeenCalledOnce()
    backplane.sink.up()
    expect(restores).toHaveBeenCalledOnce()
    // A second outage is a new one: reported again.
    backplane.sink.down(new Error('lost again'))
    expect(onError).toHaveBeenCalledTimes(2)
  })

  it('logs an outage once when there is no onError, and a broken onError breaks nothing', async () => {
    const logger = { error: vi.fn() }
    const logged = new Topics({ logger })
    const backplane = new FakeBackplane()
    await logged.useBackplane(backplane)
    backplane.failPublish = true
    logged.publish('t', 'a')
    logged.publish('t', 'b')
    expect(logger.error).toHaveBeenCalledOnce()
    expect(String(logger.error.mock.calls[0]?.[0])).toMatch(
      /backplane failed; local delivery goes on.*engine down/,
    )

    const broken = new Topics({
      onError: () => {
        throw new Error('handler bug')
      },
    })
    const second = new FakeBackplane()
    await broken.useBackplane(second)
    second.failPublish = true
    expect(() => broken.publish('t', 'x')).not.toThrow()
  })

  it('subscribes the topics already held when it starts, refuses a second backplane, and closes', async () => {
    const { topics, join } = roomApp()
    const peer = await join('early', 'a')
    const backplane = new FakeBackplane()
    await topics.useBackplane(backplane)
    expect(backplane.calls).toEqual(['start', 'subscribe early'])
    await expect(topics.useBackplane(new FakeBackplane())).rejects.toThrow(/useBackplane\(\) once/)
    await topics.closeBackplane()
    expect(backplane.calls.at(-1)).toBe('close')
    // Local again: delivery goes on, nothing reaches the closed backplane.
    topics.publish('early', 'local')
    expect(await peer.read()).toEqual({ type: 'text', data: 'local' })
    expect(backplane.published).toEqual([])
  })
})
