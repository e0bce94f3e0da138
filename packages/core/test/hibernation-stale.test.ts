/**
 * The hibernation port's heartbeat and staleness rules, runtime-free: a host of fake sockets
 * stands for a Durable Object (the auto-response, its timestamps, the attachments), and a new
 * `Hibernation` over the same sockets stands for a wake. Real workerd runs the same rules in
 * adapter-workers' test/presence.test.ts.
 */
import { Hono } from 'hono'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { type HibernatableSocket, Hibernation, type HibernationHost } from '../src/adapter.js'
import { CHANNEL_PROTOCOL, Channels, PING, PONG, type StandardSchemaV1 } from '../src/channels.js'
import type { Hub } from '../src/hub.js'
import { upgrade } from '../src/index.js'

const STALE_AFTER = 3000

/** A hibernatable socket: what it sent, its close frame, its attachment. */
class FakeSocket implements HibernatableSocket {
  readyState = 1
  readonly sent: string[] = []
  closedWith: { code?: number; reason?: string } | undefined
  attachment: unknown
  /** When the runtime last answered its heartbeat (ms). */
  autoResponded: number | undefined
  send(data: string | ArrayBuffer | ArrayBufferView): void {
    this.sent.push(String(data))
  }
  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason }
    this.readyState = 2
  }
  serializeAttachment(value: unknown): void {
    this.attachment = structuredClone(value)
  }
  deserializeAttachment(): unknown {
    return structuredClone(this.attachment)
  }
}

const anything: StandardSchemaV1<unknown> = {
  '~standard': { version: 1, vendor: 'test', validate: (value) => ({ value }) },
}

/** An object: its sockets outlive each incarnation (`wake()` makes the next one). */
function object(staleAfter: number = STALE_AFTER) {
  const sockets: FakeSocket[] = []
  const closes: Record<string, number> = {}
  const autoResponses: [string, string][] = []
  const chat = new Channels<{ name: string }>({
    async open(conn, c) {
      conn.data = { name: c.req.query('name') ?? '' }
      await conn.subscribe('members', { presence: { name: conn.data.name } })
    },
    close(conn, error) {
      closes[conn.data.name] = error.code
    },
  }).topic('room', { message: anything })
  const raw = upgrade({
    async open(conn, c) {
      conn.data = { name: c.req.query('name') ?? '' }
      await conn.subscribe('members', { presence: { name: c.req.query('name') ?? '' } })
    },
    message() {},
    close(conn, error) {
      closes[(conn.data as { name: string }).name] = error.code
    },
  })
  const app = new Hono()
    .get('/channel', upgrade(chat, { subprotocols: [CHANNEL_PROTOCOL] }))
    .get('/raw', raw)

  function incarnation(): Hibernation<FakeSocket> {
    const hub: Hub = {
      get topics() {
        return hibernation.topics
      },
      get connections() {
        return hibernation.connections
      },
    }
    const host: HibernationHost<FakeSocket> = {
      name: 'fake',
      hub,
      app: () => app,
      bindings: () => ({}),
      sockets: () => sockets,
      accept() {
        const socket = new FakeSocket()
        sockets.push(socket)
        return { socket, response: new Response(null, { status: 200 }) }
      },
      upgrade() {
        throw new Error('no serve controller here')
      },
      waitUntil() {},
      faultCode: () => undefined,
      autoRespond: (request, response) => autoResponses.push([request, response]),
      autoResponded: (ws) => ws.autoResponded,
      // The port's staleness bound is three heartbeats.
      heartbeatInterval: () => staleAfter / 3,
    }
    const hibernation: Hibernation<FakeSocket> = new Hibernation(host)
    return hibernation
  }

  let current = incarnation()
  return {
    sockets,
    closes,
    autoResponses,
    get current() {
      return current
    },
    /** Drops the incarnation: the next use rebuilds every connection from its attachment. */
    wake() {
      current = incarnation()
    },
    /** Opens a socket on `path` as `name`; its connection is open once this resolves. */
    async join(path: '/channel' | '/raw', name: string): Promise<FakeSocket> {
      const headers = new Headers({
        Upgrade: 'websocket',
        Connection: 'Upgrade',
        'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
        'Sec-WebSocket-Version': '13',
      })
      if (path === '/channel') headers.set('Sec-WebSocket-Protocol', CHANNEL_PROTOCOL)
      const response = await current.fetch(
        new Request(`http://localhost${path}?name=${name}`, { headers }),
      )
      expect(response.status).toBe(200)
      await settle()
      return sockets.at(-1) as FakeSocket
    },
    async members(): Promise<string[]> {
      const members = await current.topics.presence('members')
      return members.map((member) => (member.meta as { name: string }).name).sort()
    },
  }
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 5))

afterEach(() => {
  vi.useRealTimers()
})

/** Only `Date` is faked: the core's own zero timers still run. */
function clock(): { advance(ms: number): void } {
  vi.useFakeTimers({ toFake: ['Date'] })
  vi.setSystemTime(1_000_000)
  return { advance: (ms) => vi.setSystemTime(Date.now() + ms) }
}

describe("the hibernation port: channel clients' heartbeats", () => {
  it('asks the runtime once per incarnation to answer PING with PONG, for channel sockets only', async () => {
    const room = object()
    await room.join('/raw', 'raw')
    expect(room.autoResponses).toEqual([])
    await room.join('/channel', 'a')
    await room.join('/channel', 'b')
    expect(room.autoResponses).toEqual([[PING, PONG]])
    room.wake()
    await room.members()
    expect(room.autoResponses).toEqual([
      [PING, PONG],
      [PING, PONG],
    ])
  })
})

describe('the hibernation port: stale channel sockets', () => {
  it('ends a channel socket silent past the bound on the next event, and keeps one that beats, one that sends, and a raw one', async () => {
    const time = clock()
    const room = object()
    const silent = await room.join('/channel', 'silent')
    const beating = await room.join('/channel', 'beating')
    const sending = await room.join('/channel', 'sending')
    await room.join('/raw', 'raw')
    time.advance(2000)
    beating.autoResponded = Date.now()
    room.current.message(sending, '{"type":"subscribe","id":1,"topic":"room"}')
    await settle()
    time.advance(1500)
    // 3.5 s after its last message: the silent one is stale; the others were heard 1.5 s ago.
    expect(await room.members()).toEqual(['beating', 'raw', 'sending'])
    expect(room.closes).toEqual({ silent: 1006 })
    expect(silent.closedWith).toEqual({
      code: 1001,
      reason: 'No message or heartbeat within 3000 ms',
    })
    expect(silent.attachment).toBeNull()
    expect(room.current.connections.size).toBe(3)
    // Raw sockets promise no heartbeat: never stale.
    time.advance(60_000)
    expect(await room.members()).toEqual(['raw'])
  })

  it('looks at most once a second, and only when the object is used (no timer)', async () => {
    const time = clock()
    const room = object()
    const a = await room.join('/channel', 'a')
    time.advance(2999)
    expect(room.current.connections.size).toBe(1)
    // Stale now, but the last look was 2 ms ago.
    time.advance(2)
    expect(room.current.connections.size).toBe(1)
    expect(a.closedWith).toBeUndefined()
    // Nothing happens while nobody uses the object, however long.
    time.advance(60_000)
    expect(a.closedWith).toBeUndefined()
    expect(room.current.connections.size).toBe(0)
    expect(a.closedWith?.code).toBe(1001)
  })

  it('keeps every socket with a bound of Infinity, 0 or NaN', async () => {
    const time = clock()
    for (const bound of [Number.POSITIVE_INFINITY, 0, Number.NaN]) {
      const room = object(bound)
      const silent = await room.join('/channel', 'silent')
      time.advance(3_600_000)
      room.wake()
      expect(await room.members()).toEqual(['silent'])
      expect(silent.closedWith).toBeUndefined()
    }
  })

  it('judges a woken socket by the last message its attachment holds, not by the wake', async () => {
    const time = clock()
    const room = object()
    const early = await room.join('/channel', 'early')
    time.advance(2000)
    const late = await room.join('/channel', 'late')
    time.advance(1500)
    // The object slept meanwhile: a new incarnation, nothing heard from either in it.
    room.wake()
    expect(await room.members()).toEqual(['late'])
    expect(room.closes).toEqual({ early: 1006 })
    expect(early.closedWith?.code).toBe(1001)
    expect(late.closedWith).toBeUndefined()
  })

  it('keeps a socket that only sends through a wake: its attachment learns its messages', async () => {
    const time = clock()
    const room = object()
    const talker = await room.join('/channel', 'talker')
    // A message every 900 ms for 6 s, in several incarnations; never a heartbeat.
    for (let i = 0; i < 7; i++) {
      time.advance(900)
      room.current.message(talker, JSON.stringify({ type: 'publish', topic: 'room', data: i }))
      await settle()
      if (i % 2 === 1) room.wake()
    }
    time.advance(2000)
    room.wake()
    expect(await room.members()).toEqual(['talker'])
    expect(room.closes).toEqual({})
    expect((talker.attachment as { seen: number }).seen).toBeGreaterThanOrEqual(Date.now() - 3000)
  })
})
