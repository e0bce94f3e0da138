/**
 * Property tests of the client's state machine: fast-check drives it through random sequences of
 * opens, closes (every kind of code, with and without the server's hints), errors, app calls and
 * timers, against a fake WebSocket and fake timers, and checks its promises after every step.
 * @module
 */
import fc from 'fast-check'
import { afterEach, beforeEach, expect, it, vi } from 'vitest'
import {
  type Client,
  type ClientState,
  createClient,
  NO_RETRY_CODES,
  type WebSocketConstructor,
} from '../src/index.js'

class FakeSocket {
  static made: FakeSocket[] = []
  readonly sent: string[] = []
  protocol = ''
  opened = false
  closedByClient: { code?: number; reason?: string } | undefined
  ended = false
  // biome-ignore lint/suspicious/noExplicitAny: the client's handlers
  onopen: ((event: any) => void) | null = null
  // biome-ignore lint/suspicious/noExplicitAny: see onopen
  onmessage: ((event: any) => void) | null = null
  // biome-ignore lint/suspicious/noExplicitAny: see onopen
  onclose: ((event: any) => void) | null = null
  // biome-ignore lint/suspicious/noExplicitAny: see onopen
  onerror: ((event: any) => void) | null = null
  constructor(
    readonly url: string,
    readonly protocols: string,
  ) {
    FakeSocket.made.push(this)
  }
  send(data: string) {
    if (!this.opened || this.ended) throw new Error('send on a socket that is not open')
    this.sent.push(data)
  }
  close(code?: number, reason?: string) {
    this.closedByClient = { code, reason }
  }
  /** The live socket: made last, not ended, not let go by the client. */
  get live() {
    return !this.ended && this.onclose !== null
  }
}

const CODES = [
  1000, 1001, 1002, 1003, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 4000, 4001,
]
const OPTIONS = {
  minDelay: 100,
  maxDelay: 2000,
  factor: 2,
  minUptime: 1000,
  connectTimeout: 3000,
  heartbeatInterval: 1000,
  heartbeatTimeout: 500,
  maxQueuedMessages: 5,
  doNotRetry: [4001],
}

type Command =
  | { kind: 'open' }
  | { kind: 'close'; code: number; hint: 'none' | 'no-retry' | 'retry-after' }
  | { kind: 'error' }
  | { kind: 'advance'; ms: number }
  | { kind: 'publish' }
  | { kind: 'appClose' }
  | { kind: 'appOpen' }
  | { kind: 'ping' }

const command: fc.Arbitrary<Command> = fc.oneof(
  fc.constant({ kind: 'open' as const }),
  fc.record({
    kind: fc.constant('close' as const),
    code: fc.constantFrom(...CODES),
    hint: fc.constantFrom('none' as const, 'no-retry' as const, 'retry-after' as const),
  }),
  fc.constant({ kind: 'error' as const }),
  fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 4000 }) }),
  fc.constant({ kind: 'publish' as const }),
  fc.constant({ kind: 'appClose' as const }),
  fc.constant({ kind: 'appOpen' as const }),
  fc.constant({ kind: 'ping' as const }),
)

beforeEach(() => {
  vi.useFakeTimers()
  FakeSocket.made = []
})
afterEach(() => {
  vi.useRealTimers()
})

it('keeps its promises through any sequence of opens, closes, errors, app calls and timers', () => {
  fc.assert(
    fc.property(
      fc.array(command, { maxLength: 60 }),
      fc.double({ min: 0, max: 0.999, noNaN: true }),
      (commands, jitter) => {
        FakeSocket.made = []
        vi.clearAllTimers()
        const client: Client = createClient('ws://test/ws', {
          ...OPTIONS,
          random: () => jitter,
          WebSocket: FakeSocket as unknown as WebSocketConstructor,
        })
        const states: ClientState[] = [client.state]
        client.onState((state) => states.push(state))
        /** Publishes accepted (not thrown), with whether the client closed for good since. */
        const accepted: { text: string; droppedByClose: boolean; due: boolean }[] = []
        let count = 0
        let retryAfter = 0
        const current = () => FakeSocket.made.filter((socket) => socket.live)
        for (const step of commands) {
          const [socket] = current()
          switch (step.kind) {
            case 'open':
              if (socket && !socket.opened) {
                socket.opened = true
                socket.protocol = 'handshake.v1'
                socket.onopen?.({})
                // What waited goes out now.
                for (const item of accepted) if (!item.droppedByClose) item.due = true
              }
              break
            case 'close':
              if (socket) {
                retryAfter = 0
                if (socket.opened && step.hint === 'no-retry') {
                  socket.onmessage?.({ data: '{"type":"close","retry":false}' })
                }
                if (socket.opened && step.hint === 'retry-after') {
                  retryAfter = 2500
                  socket.onmessage?.({ data: '{"type":"close","retryAfter":2500}' })
                }
                socket.ended = true
                const before = states.length
                socket.onclose?.({ code: step.code, reason: 'r' })
                const after = states.slice(before)
                const noRetry =
                  NO_RETRY_CODES.includes(step.code) ||
                  step.code === 4001 ||
                  (socket.opened && step.hint === 'no-retry')
                if (noRetry)
                  expect(after).toEqual([{ status: 'closed', code: step.code, reason: 'r' }])
                else if (after.length > 0) {
                  const state = after[0]!
                  if (state.status === 'reconnecting') {
                    expect(state.code).toBe(step.code)
                    expect(state.delay).toBeGreaterThanOrEqual(retryAfter)
                    expect(state.delay).toBeLessThanOrEqual(Math.max(OPTIONS.maxDelay, retryAfter))
                  } else {
                    expect(state.status).toBe('closed')
                  }
                }
              }
              break
            case 'error':
              if (socket) {
                socket.ended = true
                socket.onerror?.({})
                socket.onclose?.({ code: 1006, reason: '' })
              }
              break
            case 'advance':
              vi.advanceTimersByTime(step.ms)
              break
            case 'publish': {
              const text = `{"type":"publish","topic":"t","data":${++count}}`
              try {
                client.publish('t', count)
                accepted.push({ text, droppedByClose: false, due: client.state.status === 'open' })
              } catch (err) {
                const code = (err as { code: string }).code
                expect(['queue_full', 'closed']).toContain(code)
                if (code === 'closed') expect(client.state.status).toBe('closed')
              }
              break
            }
            case 'appClose': {
              // Closing a closed client changes nothing: it keeps the close that ended it.
              const before = client.state
              client.close()
              for (const item of accepted) item.droppedByClose = true
              expect(client.state).toEqual(
                before.status === 'closed' ? before : { status: 'closed', code: 1000, reason: '' },
              )
              break
            }
            case 'appOpen':
              client.open()
              break
            case 'ping':
              if (socket?.opened) socket.onmessage?.({ data: '{"type":"ping"}' })
              break
          }
          if (client.state.status === 'closed') {
            for (const item of accepted) item.droppedByClose = true
          }
          // One live socket at most, and none once closed.
          expect(current().length).toBeLessThanOrEqual(client.state.status === 'closed' ? 0 : 1)
          // The client's state and its sockets agree.
          if (client.state.status === 'open') expect(current()[0]?.opened).toBe(true)
          // Reconnecting: waiting for the attempt, or the attempt's socket is on its way.
          if (client.state.status === 'reconnecting') {
            expect(current().every((live) => !live.opened)).toBe(true)
          }
        }
        // Every frame was written at most once, across all the sockets.
        const written = FakeSocket.made.flatMap((socket) => socket.sent)
        for (const item of accepted) {
          const times = written.filter((text) => text === item.text).length
          // Once when it was sent on an open connection, or waited for one that opened; never twice.
          expect(times).toBe(item.due ? 1 : 0)
        }
        // Pings answered with pongs; states move only along the documented edges.
        for (let i = 1; i < states.length; i++) {
          const [from, to] = [states[i - 1]!.status, states[i]!.status]
          const allowed: Record<string, string[]> = {
            connecting: ['open', 'reconnecting', 'closed'],
            open: ['reconnecting', 'closed'],
            reconnecting: ['open', 'reconnecting', 'closed'],
            closed: ['connecting'],
          }
          expect(allowed[from], `${from} -> ${to}`).toContain(to)
        }
        // Once closed, time brings no new socket.
        if (client.state.status === 'closed') {
          const made = FakeSocket.made.length
          vi.advanceTimersByTime(60_000)
          expect(FakeSocket.made.length).toBe(made)
        }
        client.close()
      },
    ),
    { numRuns: 300 },
  )
})

it('sends what waited, once and in order, when it opens; heartbeats drop a silent connection', () => {
  const client = createClient('ws://test/ws', {
    ...OPTIONS,
    random: () => 0.5,
    WebSocket: FakeSocket as unknown as WebSocketConstructor,
  })
  client.publish('t', 1)
  client.publish('t', 2)
  const [first] = FakeSocket.made
  first!.opened = true
  first!.onopen?.({})
  expect(first!.sent).toEqual([
    '{"type":"publish","topic":"t","data":1}',
    '{"type":"publish","topic":"t","data":2}',
  ])
  vi.advanceTimersByTime(1000)
  expect(first!.sent.at(-1)).toBe('{"type":"ping"}')
  vi.advanceTimersByTime(499)
  expect(client.state.status).toBe('open')
  vi.advanceTimersByTime(1)
  expect(client.state).toMatchObject({ status: 'reconnecting', code: 1006, attempt: 1 })
  expect(first!.closedByClient).toEqual({ code: 4000, reason: 'No heartbeat within 1500 ms' })
  client.close()
})

it('never delivers a position twice, resubscribes from the last one, and reports a gap once', () => {
  const client = createClient('ws://test/ws', {
    ...OPTIONS,
    WebSocket: FakeSocket as unknown as WebSocketConstructor,
  })
  const got: unknown[] = []
  const gaps: unknown[] = []
  client.subscribe('feeds/a', { message: (data) => got.push(data), gap: (gap) => gaps.push(gap) })
  const [first] = FakeSocket.made
  first!.opened = true
  first!.onopen?.({})
  expect(first!.sent).toEqual(['{"type":"subscribe","id":1,"topic":"feeds/a"}'])
  const message = (socket: FakeSocket, n: number, epoch = 'e') =>
    socket.onmessage?.({
      data: JSON.stringify({
        type: 'message',
        topic: 'feeds/a',
        data: n,
        position: { epoch, offset: n },
      }),
    })
  first!.onmessage?.({
    data: '{"type":"subscribed","id":1,"topic":"feeds/a","position":{"epoch":"e","offset":0},"recovered":true}',
  })
  for (const n of [1, 2, 2, 1, 3]) message(first!, n)
  expect(got).toEqual([1, 2, 3])
  first!.ended = true
  first!.onclose?.({ code: 1006, reason: '' })
  vi.advanceTimersByTime(OPTIONS.minDelay)
  const second = FakeSocket.made[1]!
  second.opened = true
  second.onopen?.({})
  expect(second.sent).toEqual([
    '{"type":"subscribe","id":2,"topic":"feeds/a","since":{"epoch":"e","offset":3}}',
  ])
  // The history was lost: the gap frame, then the answer says so too; the app hears it once.
  second.onmessage?.({
    data: '{"type":"gap","topic":"feeds/a","position":{"epoch":"f","offset":0},"reason":"epoch"}',
  })
  message(second, 1, 'f')
  second.onmessage?.({
    data: '{"type":"subscribed","id":2,"topic":"feeds/a","position":{"epoch":"f","offset":1},"recovered":false}',
  })
  expect(gaps).toEqual([{ topic: 'feeds/a', reason: 'epoch', position: { epoch: 'f', offset: 0 } }])
  expect(got).toEqual([1, 2, 3, 1])
  client.close()
})

it("reports a handler's throw as an uncaught error, and goes on", () => {
  const client = createClient('ws://test/ws', {
    ...OPTIONS,
    WebSocket: FakeSocket as unknown as WebSocketConstructor,
  })
  const got: unknown[] = []
  client.subscribe('t', {
    message(data) {
      got.push(data)
      if (data === 1) throw new Error('a bug in the app')
    },
  })
  const [socket] = FakeSocket.made
  socket!.opened = true
  socket!.onopen?.({})
  socket!.onmessage?.({ data: '{"type":"message","topic":"t","data":1}' })
  socket!.onmessage?.({ data: '{"type":"message","topic":"t","data":2}' })
  expect(got).toEqual([1, 2])
  expect(() => vi.advanceTimersByTime(0)).toThrow('a bug in the app')
  expect(client.state.status).toBe('open')
  client.close()
})

const open = (socket: FakeSocket) => {
  socket.opened = true
  socket.protocol = 'handshake.v1'
  socket.onopen?.({})
}

it("reads the server's retryAfter hint as a number of ms a timer can hold: NaN and huge ones bring no storm", () => {
  for (const [hint, least] of [
    ['"soon"', 0],
    ['1e12', 2_147_483_647],
    ['-5', 0],
  ] as const) {
    FakeSocket.made = []
    const client = createClient('ws://test/ws', {
      ...OPTIONS,
      random: () => 0.5,
      WebSocket: FakeSocket as unknown as WebSocketConstructor,
    })
    const socket = FakeSocket.made[0]!
    open(socket)
    socket.onmessage?.({ data: `{"type":"close","retryAfter":${hint}}` })
    socket.ended = true
    socket.onclose?.({ code: 1013, reason: '' })
    const state = client.state as { status: string; delay: number }
    expect(state.status).toBe('reconnecting')
    expect(Number.isFinite(state.delay), `delay for ${hint}`).toBe(true)
    expect(state.delay).toBeGreaterThanOrEqual(least)
    expect(state.delay).toBeLessThanOrEqual(Math.max(least, OPTIONS.minDelay))
    // No attempt before the delay.
    vi.advanceTimersByTime(Math.min(state.delay, 10_000) - 1)
    expect(FakeSocket.made).toHaveLength(state.delay > 0 ? 1 : 2)
    client.close()
  }
})

it('ignores frames that are JSON but not objects', () => {
  const client = createClient('ws://test/ws', {
    ...OPTIONS,
    WebSocket: FakeSocket as unknown as WebSocketConstructor,
  })
  const socket = FakeSocket.made[0]!
  open(socket)
  for (const data of ['null', '1', '"x"', '[]']) {
    expect(() => socket.onmessage?.({ data })).not.toThrow()
  }
  expect(client.state.status).toBe('open')
  client.close()
})

it('stays closed through a back/forward cache restore once the server said not to come back, and lets go of the page', () => {
  const page = new EventTarget()
  const saved = {
    onpagehide: Object.getOwnPropertyDescriptor(globalThis, 'onpagehide'),
    add: (globalThis as { addEventListener?: unknown }).addEventListener,
    remove: (globalThis as { removeEventListener?: unknown }).removeEventListener,
  }
  const listening = new Set<string>()
  Object.assign(globalThis, {
    onpagehide: null,
    addEventListener(type: string, listener: EventListener) {
      listening.add(type)
      page.addEventListener(type, listener)
    },
    removeEventListener(type: string, listener: EventListener) {
      listening.delete(type)
      page.removeEventListener(type, listener)
    },
  })
  try {
    const client = createClient('ws://test/ws', {
      ...OPTIONS,
      WebSocket: FakeSocket as unknown as WebSocketConstructor,
    })
    const socket = FakeSocket.made[0]!
    open(socket)
    socket.ended = true
    socket.onclose?.({ code: 1008, reason: 'policy' })
    expect(client.state).toEqual({ status: 'closed', code: 1008, reason: 'policy' })
    expect([...listening]).toEqual([])
    const show = Object.assign(new Event('pageshow'), { persisted: true })
    page.dispatchEvent(Object.assign(new Event('pagehide'), { persisted: true }))
    page.dispatchEvent(show)
    expect(client.state).toEqual({ status: 'closed', code: 1008, reason: 'policy' })
    expect(FakeSocket.made).toHaveLength(1)
    // open() is the app's to call: it follows the page again.
    client.open()
    expect([...listening].sort()).toEqual(['pagehide', 'pageshow'])
    client.close()
    expect([...listening]).toEqual([])
  } finally {
    const g = globalThis as Record<string, unknown>
    delete g.onpagehide
    if (saved.onpagehide) Object.defineProperty(globalThis, 'onpagehide', saved.onpagehide)
    g.addEventListener = saved.add
    g.removeEventListener = saved.remove
    if (saved.add === undefined) delete g.addEventListener
    if (saved.remove === undefined) delete g.removeEventListener
  }
})

it('rejects a request or an acknowledged publish whose input JSON cannot carry, instead of throwing', async () => {
  const client = createClient('ws://test/ws', {
    ...OPTIONS,
    WebSocket: FakeSocket as unknown as WebSocketConstructor,
  })
  let request: Promise<unknown> | undefined
  expect(() => {
    request = client.request('add', { a: 1n })
  }).not.toThrow()
  await expect(request).rejects.toThrow(TypeError)
  let publish: Promise<unknown> | undefined
  expect(() => {
    publish = client.publish('t', 1n, { ack: true })
  }).not.toThrow()
  await expect(publish).rejects.toThrow(TypeError)
  client.close()
})

it('pings after heartbeatInterval with nothing sent, even while it keeps receiving (an idle member proves it is alive)', () => {
  const client = createClient('ws://test/ws', {
    ...OPTIONS,
    WebSocket: FakeSocket as unknown as WebSocketConstructor,
  })
  const [socket] = FakeSocket.made
  socket!.opened = true
  socket!.onopen?.({})
  const pings = () => socket!.sent.filter((frame) => frame === '{"type":"ping"}').length
  // The server talks every 100 ms: nothing is ever silent on the way in.
  const talk = (ms: number) => {
    for (let t = 0; t < ms; t += 100) {
      vi.advanceTimersByTime(100)
      socket!.onmessage?.({ data: '{"type":"message","topic":"t","data":1}' })
    }
  }
  talk(900)
  expect(pings()).toBe(0)
  talk(100)
  expect(pings()).toBe(1)
  // A send restarts the wait: the next ping is heartbeatInterval after it.
  talk(500)
  client.publish('t', 1)
  talk(900)
  expect(pings()).toBe(1)
  talk(100)
  expect(pings()).toBe(2)
  expect(client.state.status).toBe('open')
  client.close()
})

it('keeps a topic’s members from the presence frames: the list replaces, diffs apply, the handler gets both', () => {
  const client = createClient('ws://test/ws', {
    ...OPTIONS,
    WebSocket: FakeSocket as unknown as WebSocketConstructor,
  })
  const calls: unknown[] = []
  const sub = client.subscribe('rooms/a', {
    message() {},
    presence: (members, diff) => calls.push([[...members], diff]),
  })
  const [socket] = FakeSocket.made
  socket!.opened = true
  socket!.onopen?.({})
  const frame = (value: object) => socket!.onmessage?.({ data: JSON.stringify(value) })
  frame({ type: 'subscribed', id: 1, topic: 'rooms/a', recovered: true })
  frame({ type: 'presence', topic: 'rooms/a', members: [{ id: 'a', meta: 1 }], self: 'a' })
  expect([...sub.members]).toEqual([['a', 1]])
  expect(sub.self).toBe('a')
  frame({ type: 'presence', topic: 'rooms/a', joins: [{ id: 'b', meta: 2 }], leaves: [] })
  frame({
    type: 'presence',
    topic: 'rooms/a',
    joins: [{ id: 'a', meta: 3 }],
    leaves: [{ id: 'a', meta: 1 }],
  })
  expect(sub.members).toEqual(
    new Map<string, unknown>([
      ['a', 3],
      ['b', 2],
    ]),
  )
  // A new list after a reconnect replaces the kept one; the handler gets the difference.
  frame({
    type: 'presence',
    topic: 'rooms/a',
    members: [
      { id: 'b', meta: 2 },
      { id: 'c', meta: 4 },
    ],
  })
  expect([...sub.members]).toEqual([
    ['b', 2],
    ['c', 4],
  ])
  expect(sub.self).toBeUndefined()
  expect(calls.at(-1)).toEqual([
    [
      ['b', 2],
      ['c', 4],
    ],
    { joins: [{ id: 'c', meta: 4 }], leaves: [{ id: 'a', meta: 3 }] },
  ])
  expect(calls).toHaveLength(4)
  // Another topic's frames, and frames after unsubscribe, change nothing.
  frame({ type: 'presence', topic: 'rooms/b', members: [{ id: 'x', meta: 0 }] })
  sub.unsubscribe()
  expect(sub.members.size).toBe(0)
  frame({ type: 'presence', topic: 'rooms/a', joins: [{ id: 'd', meta: 5 }], leaves: [] })
  expect(sub.members.size).toBe(0)
  expect(calls).toHaveLength(4)
  client.close()
})

it('a diff of a subscription given up, arriving after the topic was subscribed again, changes nothing before the new list', () => {
  const client = createClient('ws://test/ws', {
    ...OPTIONS,
    WebSocket: FakeSocket as unknown as WebSocketConstructor,
  })
  const [socket] = FakeSocket.made.slice(-1)
  socket!.opened = true
  socket!.onopen?.({})
  const frame = (value: object) => socket!.onmessage?.({ data: JSON.stringify(value) })
  const first = client.subscribe('rooms/a', { message() {} })
  frame({ type: 'subscribed', id: 1, topic: 'rooms/a', recovered: true })
  frame({ type: 'presence', topic: 'rooms/a', members: [{ id: 'a', meta: 1 }] })
  expect(first.members.size).toBe(1)
  // Given up and taken again in one go: the server's diffs of the first subscription, sent
  // before it read the unsubscribe, are still on their way.
  first.unsubscribe()
  const calls: unknown[] = []
  const again = client.subscribe('rooms/a', {
    message() {},
    presence: (members, diff) => calls.push([[...members], diff]),
  })
  frame({ type: 'presence', topic: 'rooms/a', joins: [{ id: 'old', meta: 0 }], leaves: [] })
  frame({ type: 'presence', topic: 'rooms/a', joins: [], leaves: [{ id: 'a', meta: 1 }] })
  expect(again.members.size).toBe(0)
  expect(calls).toEqual([])
  frame({ type: 'ack', id: 2 })
  frame({ type: 'subscribed', id: 3, topic: 'rooms/a', recovered: true })
  frame({ type: 'presence', topic: 'rooms/a', members: [{ id: 'b', meta: 2 }] })
  expect([...again.members]).toEqual([['b', 2]])
  expect(calls).toEqual([[[['b', 2]], { joins: [{ id: 'b', meta: 2 }], leaves: [] }]])
  // Diffs after the list apply.
  frame({ type: 'presence', topic: 'rooms/a', joins: [{ id: 'c', meta: 3 }], leaves: [] })
  expect([...again.members]).toEqual([
    ['b', 2],
    ['c', 3],
  ])
  client.close()
})

it('a subscription refused on a reconnect lists no member any more', () => {
  const client = createClient('ws://test/ws', {
    ...OPTIONS,
    WebSocket: FakeSocket as unknown as WebSocketConstructor,
  })
  const errors: unknown[] = []
  const sub = client.subscribe('rooms/a', { message() {}, error: (err) => errors.push(err) })
  const first = FakeSocket.made.at(-1)!
  first.opened = true
  first.onopen?.({})
  const frame = (socket: FakeSocket, value: object) =>
    socket.onmessage?.({ data: JSON.stringify(value) })
  frame(first, { type: 'subscribed', id: 1, topic: 'rooms/a', recovered: true })
  frame(first, { type: 'presence', topic: 'rooms/a', members: [{ id: 'a', meta: 1 }], self: 'a' })
  expect(sub.members.size).toBe(1)
  first.ended = true
  first.onclose?.({ code: 1006, reason: '' })
  vi.advanceTimersByTime(OPTIONS.maxDelay)
  const second = FakeSocket.made.at(-1)!
  expect(second).not.toBe(first)
  second.opened = true
  second.onopen?.({})
  // The server no longer lets this client in: the subscription ends.
  frame(second, { type: 'error', id: 2, code: 'forbidden', message: 'no' })
  expect(errors).toHaveLength(1)
  expect(sub.members.size).toBe(0)
  expect(sub.self).toBeUndefined()
  client.close()
})
