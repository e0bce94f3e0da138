import { Hono } from 'hono'
import * as v from 'valibot'
import { describe, expect, expectTypeOf, it, vi } from 'vitest'
import { z } from 'zod'
import { createHub } from '../src/adapter.js'
import {
  CHANNEL_PROTOCOL,
  ChannelError,
  Channels,
  channelFrame,
  closeChannel,
  type MessageOf,
  PING,
  PONG,
  type TopicName,
} from '../src/channels.js'
import { getHub, upgrade } from '../src/index.js'
import { connect, request, type TestPeer } from '../src/testing.js'

const errors: unknown[] = []

function makeChannels() {
  return new Channels<{ name: string; admin: boolean }>({
    open(conn, c) {
      conn.data = { name: c.req.query('name') ?? 'anonymous', admin: c.req.query('admin') === '1' }
    },
    onError: (err) => errors.push(err),
    maxInvalidFrames: 5,
  })
    .topic('rooms/:room', {
      message: z.object({ text: z.string().min(1), from: z.string().optional() }),
      authorize: ({ params, action, conn }) =>
        params.room !== 'secret' || (action === 'subscribe' && conn.data.admin),
      publish: ({ conn, data }) => ({ text: data.text, from: conn.data.name }),
    })
    .topic('news', {
      message: v.object({ headline: v.string() }),
      authorize: ({ action }) => action === 'subscribe',
    })
    .request('add', v.object({ a: v.number(), b: v.number() }), ({ input }) => input.a + input.b)
    .request('whoami', z.object({}), async ({ conn }) => ({ name: conn.data.name }))
    .request('fail', z.unknown(), () => {
      throw new Error('secret detail')
    })
    .request('conflict', z.unknown(), () => {
      throw new ChannelError('conflict', 'Taken', { by: 'bob' })
    })
    .request(
      'slow',
      z.number(),
      (context) => new Promise((r) => setTimeout(() => r(context.input), context.input)),
    )
}

function makeApp(channels = makeChannels()) {
  const app = new Hono()
  app.get('/ws', upgrade(channels, { subprotocols: [CHANNEL_PROTOCOL] }))
  app.post('/news', async (c) => {
    channels.publish(getHub(c).topics, 'news', { headline: await c.req.text() })
    return c.body(null, 204)
  })
  return app
}

async function json(peer: TestPeer): Promise<Record<string, unknown>> {
  const message = await peer.read()
  if (message.type !== 'text') throw new Error('expected text')
  return JSON.parse(message.data)
}

async function join(app: Hono, name = 'alice', query = ''): Promise<TestPeer> {
  return connect(app, `/ws?name=${name}${query}`, { protocols: [CHANNEL_PROTOCOL] })
}

describe('channels', () => {
  it('subscribes, publishes through the schema and the publish hook, and acknowledges', async () => {
    const app = makeApp()
    const alice = await join(app, 'alice')
    const bob = await join(app, 'bob')
    bob.send(JSON.stringify({ type: 'subscribe', id: 1, topic: 'rooms/lobby' }))
    expect(await json(bob)).toEqual({
      type: 'subscribed',
      id: 1,
      topic: 'rooms/lobby',
      recovered: true,
    })
    alice.send(
      JSON.stringify({
        type: 'publish',
        id: 7,
        topic: 'rooms/lobby',
        data: { text: 'hi', from: 'mallory' },
      }),
    )
    expect(await json(alice)).toEqual({ type: 'ack', id: 7 })
    expect(await json(bob)).toEqual({
      type: 'message',
      topic: 'rooms/lobby',
      data: { text: 'hi', from: 'alice' },
    })
    await request(app, '/news', { method: 'POST', body: 'not subscribed' })
    bob.send(JSON.stringify({ type: 'subscribe', id: 2, topic: 'news' }))
    expect(await json(bob)).toEqual({ type: 'subscribed', id: 2, topic: 'news', recovered: true })
    await request(app, '/news', { method: 'POST', body: 'Extra!' })
    expect(await json(bob)).toEqual({
      type: 'message',
      topic: 'news',
      data: { headline: 'Extra!' },
    })
  })

  it('answers a refusal with an error frame, not a close', async () => {
    const app = makeApp()
    const peer = await join(app)
    peer.send(JSON.stringify({ type: 'subscribe', id: 1, topic: 'rooms/secret' }))
    expect(await json(peer)).toEqual({
      type: 'error',
      id: 1,
      code: 'forbidden',
      message: 'Not allowed to subscribe to "rooms/secret"',
    })
    peer.send(JSON.stringify({ type: 'publish', id: 2, topic: 'news', data: { headline: 'x' } }))
    expect(await json(peer)).toMatchObject({ type: 'error', id: 2, code: 'forbidden' })
    peer.send(JSON.stringify({ type: 'subscribe', id: 3, topic: 'nowhere' }))
    expect(await json(peer)).toMatchObject({ type: 'error', id: 3, code: 'not_found' })
    const admin = await join(app, 'root', '&admin=1')
    admin.send(JSON.stringify({ type: 'subscribe', id: 1, topic: 'rooms/secret' }))
    expect(await json(admin)).toMatchObject({ type: 'subscribed', id: 1 })
    peer.send(PING) // still open
    expect(await json(peer)).toEqual({ type: 'pong' })
  })

  it("answers input the schema refuses with the schema's issues, with zod and valibot", async () => {
    const app = makeApp()
    const peer = await join(app)
    peer.send(JSON.stringify({ type: 'publish', id: 1, topic: 'rooms/a', data: { text: '' } }))
    const zodError = await json(peer)
    expect(zodError).toMatchObject({ type: 'error', id: 1, code: 'invalid' })
    expect(zodError.issues).toEqual([expect.objectContaining({ path: ['text'] })])
    peer.send(JSON.stringify({ type: 'request', id: 2, name: 'add', input: { a: 1, b: 'two' } }))
    const valibotError = await json(peer)
    expect(valibotError).toMatchObject({ type: 'error', id: 2, code: 'invalid' })
    expect(valibotError.issues).toEqual([expect.objectContaining({ path: ['b'] })])
  })

  it('answers requests with their output, a ChannelError with its code, anything else as internal', async () => {
    errors.length = 0
    const app = makeApp()
    const peer = await join(app, 'carol')
    peer.send(JSON.stringify({ type: 'request', id: 1, name: 'add', input: { a: 1, b: 2 } }))
    expect(await json(peer)).toEqual({ type: 'response', id: 1, output: 3 })
    peer.send(JSON.stringify({ type: 'request', id: 2, name: 'whoami', input: {} }))
    expect(await json(peer)).toEqual({ type: 'response', id: 2, output: { name: 'carol' } })
    peer.send(JSON.stringify({ type: 'request', id: 3, name: 'conflict' }))
    expect(await json(peer)).toEqual({
      type: 'error',
      id: 3,
      code: 'conflict',
      message: 'Taken',
      details: { by: 'bob' },
    })
    peer.send(JSON.stringify({ type: 'request', id: 4, name: 'fail' }))
    expect(await json(peer)).toEqual({
      type: 'error',
      id: 4,
      code: 'internal',
      message: 'Internal server error',
    })
    expect(errors).toEqual([new Error('secret detail')])
    peer.send(JSON.stringify({ type: 'request', id: 5, name: 'nope' }))
    expect(await json(peer)).toMatchObject({ id: 5, code: 'not_found' })
  })

  it('runs requests side by side and answers pings meanwhile', async () => {
    const app = makeApp()
    const peer = await join(app)
    peer.send(JSON.stringify({ type: 'request', id: 1, name: 'slow', input: 200 }))
    peer.send(JSON.stringify({ type: 'request', id: 2, name: 'slow', input: 10 }))
    peer.send(PING)
    expect(await json(peer)).toEqual({ type: 'pong' })
    expect(await json(peer)).toEqual({ type: 'response', id: 2, output: 10 })
    expect(await json(peer)).toEqual({ type: 'response', id: 1, output: 200 })
    expect(PONG).toBe('{"type":"pong"}')
  })

  it('closes text that is not JSON with 1007, JSON that is not a frame with 1008, binary with 1003', async () => {
    const app = makeApp()
    const cases: [string | Uint8Array, number, RegExp][] = [
      ['{not json', 1007, /^Not JSON/],
      ['[1,2]', 1008, /expected a JSON object/],
      ['{"type":"dance"}', 1008, /unknown type "dance"/],
      ['{"type":"request","id":-1,"name":"add"}', 1008, /"id" must be a positive integer/],
      ['{"type":"presence"}', 1008, /server to the client only/],
      [new Uint8Array([1]), 1003, /Binary/],
    ]
    for (const [data, code, reason] of cases) {
      const peer = await join(app)
      peer.send(data)
      const closed = await peer.closed
      expect(closed.code).toBe(code)
      expect(closed.reason).toMatch(reason)
    }
  })

  it('closes a peer that keeps sending invalid input with 1008; a success resets the count', async () => {
    const app = makeApp()
    const peer = await join(app)
    const bad = (id: number) =>
      peer.send(JSON.stringify({ type: 'request', id, name: 'add', input: {} }))
    for (let id = 1; id <= 4; id++) {
      bad(id)
      expect(await json(peer)).toMatchObject({ id, code: 'invalid' })
    }
    peer.send(JSON.stringify({ type: 'request', id: 5, name: 'add', input: { a: 0, b: 0 } }))
    expect(await json(peer)).toMatchObject({ id: 5, type: 'response' })
    for (let id = 6; id <= 9; id++) {
      bad(id)
      expect(await json(peer)).toMatchObject({ id, code: 'invalid' })
    }
    bad(10)
    expect(await peer.closed).toMatchObject({ code: 1008, reason: /^Too many invalid frames/ })
  })

  it('closes a connection without the subprotocol with 1002, saying what to do', async () => {
    const peer = await connect(makeApp(), '/ws')
    expect(await peer.closed).toMatchObject({
      code: 1002,
      reason: "Expected subprotocol handshake.v1: list it in upgrade()'s subprotocols",
    })
  })

  it('closes with a retry hint', async () => {
    const channels = new Channels({
      open(conn) {
        void closeChannel(conn, 1013, 'Busy', { retryAfter: 5000 })
      },
    })
    const peer = await connect(makeApp(channels as never), '/ws', { protocols: [CHANNEL_PROTOCOL] })
    expect(await json(peer)).toEqual({ type: 'close', retryAfter: 5000 })
    expect(await peer.closed).toMatchObject({ code: 1013, reason: 'Busy' })
  })

  it('refuses bad patterns and options', () => {
    expect(() => new Channels().topic('rooms//x', { message: z.string() })).toThrow(TypeError)
    expect(() => new Channels({ maxInvalidFrames: 0 })).toThrow(RangeError)
    expect(() =>
      new Channels().request('a', z.string(), () => 1).request('a', z.string(), () => 2),
    ).toThrow(/twice/)
  })

  it('types the client from the definition', () => {
    const channels = makeChannels()
    type Types = NonNullable<(typeof channels)['~channels']>
    expectTypeOf<TopicName<Types['topics']>>().toEqualTypeOf<`rooms/${string}` | 'news'>()
    expectTypeOf<MessageOf<Types['topics'], 'rooms/lobby'>>().toEqualTypeOf<{
      text: string
      from?: string | undefined
    }>()
    expectTypeOf<Types['requests']['add']>().toEqualTypeOf<{
      readonly input: { a: number; b: number }
      readonly output: number
    }>()
    expectTypeOf<Types['requests']['whoami']['output']>().toEqualTypeOf<{ name: string }>()
    const spy = vi.fn()
    // @ts-expect-error: not a topic of the definition
    channels.publish({ publish: spy }, 'elsewhere', { headline: '' })
    // @ts-expect-error: not the topic's message
    channels.publish({ publish: spy }, 'news', { text: '' })
  })

  it('resumes a topic that keeps history from a position: the missed messages in order, then subscribed; a lost epoch is a gap', async () => {
    const hub = createHub()
    hub.topics.useHistory({
      history: (topic) => (topic.startsWith('feeds/') ? { size: 3, ttl: 60_000 } : undefined),
      frame: channelFrame,
    })
    const channels = new Channels().topic('feeds/:feed', { message: z.object({ n: z.number() }) })
    const app = makeApp(channels as never)
    const open = () => connect(app, '/ws', { protocols: [CHANNEL_PROTOCOL], hub })
    const reader = await open()
    reader.send(JSON.stringify({ type: 'subscribe', id: 1, topic: 'feeds/a' }))
    const first = await json(reader)
    expect(first).toMatchObject({ type: 'subscribed', id: 1, topic: 'feeds/a', recovered: true })
    const writer = await open()
    for (let n = 1; n <= 2; n++) {
      writer.send(JSON.stringify({ type: 'publish', id: n, topic: 'feeds/a', data: { n } }))
      expect(await json(writer)).toEqual({ type: 'ack', id: n })
    }
    const one = await json(reader)
    const epoch = (one.position as { epoch: string }).epoch
    expect(one).toEqual({
      type: 'message',
      topic: 'feeds/a',
      data: { n: 1 },
      position: { epoch, offset: 1 },
    })
    expect(await json(reader)).toMatchObject({ data: { n: 2 }, position: { epoch, offset: 2 } })
    reader.close(1000)
    for (let n = 3; n <= 4; n++) {
      writer.send(JSON.stringify({ type: 'publish', id: n, topic: 'feeds/a', data: { n } }))
      expect(await json(writer)).toEqual({ type: 'ack', id: n })
    }
    // Back from offset 2: 3 and 4, then the answer.
    const back = await open()
    back.send(
      JSON.stringify({ type: 'subscribe', id: 1, topic: 'feeds/a', since: { epoch, offset: 2 } }),
    )
    expect(await json(back)).toMatchObject({
      type: 'message',
      data: { n: 3 },
      position: { offset: 3 },
    })
    expect(await json(back)).toMatchObject({
      type: 'message',
      data: { n: 4 },
      position: { offset: 4 },
    })
    expect(await json(back)).toEqual({
      type: 'subscribed',
      id: 1,
      topic: 'feeds/a',
      position: { epoch, offset: 4 },
      recovered: true,
    })
    // From another epoch: the gap first, then what the history holds, then recovered: false.
    const lost = await open()
    lost.send(
      JSON.stringify({
        type: 'subscribe',
        id: 9,
        topic: 'feeds/a',
        since: { epoch: 'gone', offset: 7 },
      }),
    )
    expect(await json(lost)).toMatchObject({ type: 'gap', topic: 'feeds/a', reason: 'epoch' })
    const replayed: unknown[] = []
    for (;;) {
      const frame = await json(lost)
      if (frame.type === 'subscribed') {
        expect(frame).toMatchObject({ id: 9, recovered: false, position: { epoch, offset: 4 } })
        break
      }
      replayed.push(frame.data)
    }
    expect(replayed).toEqual([{ n: 2 }, { n: 3 }, { n: 4 }]) // the history keeps 3
    // Raw data on the same hub is sent as it is.
    expect(
      channelFrame({ type: 'message', topic: 't', data: 'raw', position: { epoch, offset: 1 } }),
    ).toBe('raw')
  })
})

describe('channels: review', () => {
  it("reports a handler's TypeError that mentions a topic to onError and answers internal, without its message", async () => {
    const reported: unknown[] = []
    const channels = new Channels({ onError: (err) => reported.push(err) })
      .topic('t', {
        message: z.unknown(),
        authorize: () => {
          // A bug in the app's hook: its message names "subscribers".
          return (
            undefined as unknown as { subscribers: { has(x: string): boolean } }
          ).subscribers.has('x')
        },
      })
      .request('bug', z.unknown(), () => {
        return (undefined as unknown as { topic: string }).topic
      })
    const peer = await connect(makeApp(channels as never), '/ws', { protocols: [CHANNEL_PROTOCOL] })
    peer.send(JSON.stringify({ type: 'request', id: 1, name: 'bug' }))
    expect(await json(peer)).toEqual({
      type: 'error',
      id: 1,
      code: 'internal',
      message: 'Internal server error',
    })
    peer.send(JSON.stringify({ type: 'publish', id: 2, topic: 't', data: 1 }))
    expect(await json(peer)).toEqual({
      type: 'error',
      id: 2,
      code: 'internal',
      message: 'Internal server error',
    })
    expect(reported).toHaveLength(2)
    expect(reported[0]).toBeInstanceOf(TypeError)
  })

  it("does not close a client for its app's own error replies or refusals, however many in a row", async () => {
    const app = makeApp()
    const peer = await join(app)
    // maxInvalidFrames is 5: a legit client can get more app errors and refusals in a row.
    for (let id = 1; id <= 6; id++) {
      peer.send(JSON.stringify({ type: 'request', id, name: 'conflict' }))
      expect(await json(peer)).toMatchObject({ id, code: 'conflict' })
    }
    for (let id = 7; id <= 12; id++) {
      peer.send(JSON.stringify({ type: 'subscribe', id, topic: 'rooms/secret' }))
      expect(await json(peer)).toMatchObject({ id, code: 'forbidden' })
    }
    peer.send(PING)
    expect(await json(peer)).toEqual({ type: 'pong' })
  })

  it('frames a gap with the position to go on from: the next message is after it', async () => {
    const hub = createHub()
    hub.topics.useHistory({ history: () => ({ size: 2, ttl: 60_000 }), frame: channelFrame })
    const channels = new Channels().topic('f', { message: z.number() })
    const app = makeApp(channels as never)
    const open = () => connect(app, '/ws', { protocols: [CHANNEL_PROTOCOL], hub })
    const writer = await open()
    for (let n = 1; n <= 5; n++) {
      writer.send(JSON.stringify({ type: 'publish', id: n, topic: 'f', data: n }))
      expect(await json(writer)).toEqual({ type: 'ack', id: n })
    }
    const reader = await open()
    reader.send(JSON.stringify({ type: 'subscribe', id: 1, topic: 'f' }))
    const { position } = (await json(reader)) as { position: { epoch: string } }
    const back = await open()
    back.send(
      JSON.stringify({
        type: 'subscribe',
        id: 1,
        topic: 'f',
        since: { epoch: position.epoch, offset: 1 },
      }),
    )
    const gap = (await json(back)) as { type: string; position: { offset: number } }
    const next = (await json(back)) as { type: string; position: { offset: number } }
    expect(gap.type).toBe('gap')
    expect(next).toMatchObject({ type: 'message', data: 4 })
    expect(gap.position.offset).toBeLessThan(next.position.offset)
  })
})

describe('channels: review, at the concurrency bound', () => {
  it('runs the close hook of a connection that closes while its requests hang at maxConcurrentRequests', async () => {
    const closed = vi.fn()
    const channels = new Channels({ maxConcurrentRequests: 1, close: closed }).request(
      'hang',
      z.unknown(),
      () => new Promise(() => {}),
    )
    const peer = await connect(makeApp(channels as never), '/ws', { protocols: [CHANNEL_PROTOCOL] })
    peer.send(JSON.stringify({ type: 'request', id: 1, name: 'hang' }))
    peer.send(JSON.stringify({ type: 'request', id: 2, name: 'hang' }))
    await new Promise((r) => setTimeout(r, 50))
    peer.close(1000)
    await peer.closed
    await vi.waitFor(() => expect(closed).toHaveBeenCalledTimes(1), { timeout: 2000 })
  })
})
