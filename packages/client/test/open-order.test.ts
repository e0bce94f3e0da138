/**
 * What goes out when a connection opens, and timers the app sets long: tests of the client
 * against a fake WebSocket and fake timers.
 * @module
 */
import { afterEach, beforeEach, expect, it, vi } from 'vitest'
import { createClient, type WebSocketConstructor } from '../src/index.js'

class FakeSocket {
  static made: FakeSocket[] = []
  readonly sent: string[] = []
  protocol = 'handshake.v1'
  closedByClient: { code?: number; reason?: string } | undefined
  // biome-ignore lint/suspicious/noExplicitAny: the client's handlers
  onopen: ((event: any) => void) | null = null
  // biome-ignore lint/suspicious/noExplicitAny: see onopen
  onmessage: ((event: any) => void) | null = null
  // biome-ignore lint/suspicious/noExplicitAny: see onopen
  onclose: ((event: any) => void) | null = null
  // biome-ignore lint/suspicious/noExplicitAny: see onopen
  onerror: ((event: any) => void) | null = null
  constructor() {
    FakeSocket.made.push(this)
  }
  send(data: string) {
    this.sent.push(data)
  }
  close(code?: number, reason?: string) {
    this.closedByClient = { code, reason }
  }
}
const WebSocket = FakeSocket as unknown as WebSocketConstructor

beforeEach(() => {
  vi.useFakeTimers()
  FakeSocket.made = []
})
afterEach(() => {
  vi.useRealTimers()
})

it('subscribes once and keeps the queue first when an open listener subscribes and sends', () => {
  const client = createClient('ws://test/ws', { WebSocket })
  client.subscribe('a', { message() {} })
  client.publish('t', 1)
  const subscribed: string[] = []
  const gaps: string[] = []
  client.onState((state) => {
    if (state.status !== 'open' || subscribed.length > 0) return
    client.subscribe('b', {
      message() {},
      subscribed: () => subscribed.push('b'),
      gap: (gap) => gaps.push(gap.reason),
    })
    client.publish('t', 2)
  })
  const [socket] = FakeSocket.made
  socket!.onopen?.({})
  // The subscriptions held, then what waited, then what the listener sent: each once.
  expect(socket!.sent).toEqual([
    '{"type":"subscribe","id":1,"topic":"a"}',
    '{"type":"publish","topic":"t","data":1}',
    '{"type":"subscribe","id":2,"topic":"b"}',
    '{"type":"publish","topic":"t","data":2}',
  ])
  // A topic without history: the one answer is no resume, so no gap.
  socket!.onmessage?.({ data: '{"type":"subscribed","id":2,"topic":"b","recovered":true}' })
  expect(subscribed).toEqual(['b'])
  expect(gaps).toEqual([])
  client.close()
})

it('holds a timeout longer than a timer can (Infinity, 30 days) instead of firing it at once', async () => {
  const client = createClient('ws://test/ws', {
    WebSocket,
    requestTimeout: Number.POSITIVE_INFINITY,
    heartbeatInterval: Number.POSITIVE_INFINITY,
  })
  const [socket] = FakeSocket.made
  socket!.onopen?.({})
  const outcomes: string[] = []
  const track = (name: string, promise: Promise<unknown>) =>
    promise.then(
      () => outcomes.push(`${name}: answered`),
      (err: { code: string }) => outcomes.push(`${name}: ${err.code}`),
    )
  track('default', client.request('x', {}))
  track('30 days', client.request('y', {}, { timeout: 30 * 24 * 60 * 60 * 1000 }))
  // Node and browsers run a timer over 2^31 - 1 ms after 1 ms (Node's fake timers do too).
  await vi.advanceTimersByTimeAsync(60_000)
  expect(outcomes).toEqual([])
  // Nor does an endless heartbeat interval turn into a ping storm or a drop.
  expect(socket!.sent.filter((text) => text === '{"type":"ping"}')).toEqual([])
  expect(client.state.status).toBe('open')
  socket!.onmessage?.({ data: '{"type":"response","id":1,"output":1}' })
  await vi.advanceTimersByTimeAsync(0)
  expect(outcomes).toEqual(['default: answered'])
  client.close()
})

it("forgets a server's close hint with the connection it came on: it never applies to the next one", () => {
  const client = createClient('ws://test/ws', { WebSocket, minDelay: 100 })
  const [first] = FakeSocket.made
  first!.onopen?.({})
  // The server says not to come back, but the app closes first, then opens again.
  first!.onmessage?.({ data: '{"type":"close","retry":false}' })
  client.close()
  client.open()
  // The next attempt fails before it opens, and the one after drops once open: the old hint
  // says nothing about either.
  FakeSocket.made[1]!.onclose?.({ code: 1006, reason: '' })
  expect(client.state).toMatchObject({ status: 'reconnecting', code: 1006, attempt: 1 })
  vi.advanceTimersByTime(100)
  const third = FakeSocket.made[2]!
  third.onopen?.({})
  third.onclose?.({ code: 1006, reason: '' })
  expect(client.state).toMatchObject({ status: 'reconnecting', code: 1006 })
  client.close()
})
