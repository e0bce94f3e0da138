/**
 * The channel controller's fast paths: request and publish frames in the client's own layout
 * are read without parsing the whole text as JSON, and a publish whose hooks answer at once is
 * handled without a promise. Both must give what the general path gives.
 */
import fc from 'fast-check'
import { Hono } from 'hono'
import { describe, expect, it } from 'vitest'
import { CHANNEL_PROTOCOL, ChannelError, Channels, type StandardSchemaV1 } from '../src/channels.js'
import { FrameError, parseFrame } from '../src/channels-protocol.js'
import { upgrade } from '../src/index.js'
import { connect, type TestPeer } from '../src/testing.js'

/** What the general path makes of a text: the JSON object's fields, or the FrameError's code. */
function reference(text: string): unknown {
  let value: Record<string, unknown>
  try {
    value = JSON.parse(text)
  } catch {
    return 1007
  }
  const isId = (id: unknown) => typeof id === 'number' && Number.isSafeInteger(id) && id > 0
  const isName = (name: unknown) => typeof name === 'string' && name !== ''
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 1008
  if (value.type === 'request') {
    if (!isId(value.id) || !isName(value.name)) return 1008
    return { type: 'request', id: value.id, name: value.name, input: value.input }
  }
  if (value.type === 'publish') {
    if ((value.id !== undefined && !isId(value.id)) || !isName(value.topic)) return 1008
    if (!('data' in value)) return 1008
    return { type: 'publish', id: value.id, topic: value.topic, data: value.data }
  }
  return 'other'
}

function parsed(text: string): unknown {
  try {
    return parseFrame(text)
  } catch (err) {
    if (err instanceof FrameError) return err.code
    throw err
  }
}

/** The client's layout, as `@handshake/client` writes it. */
const requestText = (id: number, name: string, input: unknown) =>
  `{"type":"request","id":${id},"name":${JSON.stringify(name)},"input":${JSON.stringify(input) ?? 'null'}}`
const publishText = (id: number | undefined, topic: string, data: unknown) =>
  `{"type":"publish",${id === undefined ? '' : `"id":${id},`}"topic":${JSON.stringify(topic)},"data":${JSON.stringify(data) ?? 'null'}}`

describe('channels: reading frames quickly', () => {
  it('reads requests and publishes in the client layout as JSON.parse does', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
        fc.string({ unit: 'binary' }),
        fc.jsonValue(),
        fc.boolean(),
        (id, name, value, withId) => {
          for (const text of [
            requestText(id, name, value),
            publishText(withId ? id : undefined, name, value),
          ]) {
            const expected = reference(text)
            const got = parsed(text)
            expect(got).toEqual(expected)
            if (typeof expected === 'object') expect(Object.keys(got as object)).toContain('type')
          }
        },
      ),
      { numRuns: 500 },
    )
  })

  it('leaves any other layout to the general path, with the same result', () => {
    const texts = [
      // Keys out of order, whitespace, escapes, duplicate keys, trailing text.
      '{"type":"request","name":"echo","id":1,"input":1}',
      '{"type":"request","id":1,"name":"echo","input":1 }',
      '{"type":"request","id":1,"name":"echo","input": 1}',
      '{"type":"request","id":1,"name":"ec\\"ho","input":1}',
      '{"type":"request","id":1,"name":"e\\u0063ho","input":1}',
      '{"type":"request","id":1,"name":"echo","input":1,"name":"other"}',
      '{"type":"request","id":1,"name":"echo","input":{"a":1},"id":2}',
      '{"type":"request","id":1,"name":"echo","input":1}}',
      '{"type":"request","id":1,"name":"echo","input":1} ',
      '{"type":"request","id":1,"name":"echo","input":}',
      '{"type":"request","id":1,"name":"echo","input":1,}',
      '{"type":"request","id":1,"name":"echo"}',
      // Ids that are not positive safe integers, or not written as one.
      '{"type":"request","id":0,"name":"echo","input":1}',
      '{"type":"request","id":01,"name":"echo","input":1}',
      '{"type":"request","id":1.0,"name":"echo","input":1}',
      '{"type":"request","id":1e3,"name":"echo","input":1}',
      '{"type":"request","id":-1,"name":"echo","input":1}',
      '{"type":"request","id":9007199254740993,"name":"echo","input":1}',
      '{"type":"request","id":"1","name":"echo","input":1}',
      '{"type":"request","id":1,"name":"","input":1}',
      '{"type":"request","id":1,"name":"a\tb","input":1}',
      '{"type":"publish","topic":"t","data":1}',
      '{"type":"publish","id":3,"topic":"t","data":[1,{"b":null}]}',
      '{"type":"publish","id":3 ,"topic":"t","data":1}',
      '{"type":"publish","id":3,"topic":"","data":1}',
      '{"type":"publish","id":3,"topic":"t"}',
      '{"type":"publish","id":3,"topic":"t","data":1,"data":2}',
      '{"type":"publish","topic":"t","data":1,"id":0}',
      '{"type":"publish","data":1,"topic":"t"}',
      '{"type":"publish","id":3,"topic":"t","data":"}"}',
    ]
    for (const text of texts) expect([text, parsed(text)]).toEqual([text, reference(text)])
  })
})

async function json(peer: TestPeer): Promise<Record<string, unknown>> {
  const message = await peer.read()
  if (message.type !== 'text') throw new Error('expected text')
  return JSON.parse(message.data)
}

/** A string schema that answers at once, or after a turn. */
const text = (later: boolean): StandardSchemaV1<string> => ({
  '~standard': {
    version: 1,
    vendor: 'test',
    validate: (value: unknown) => {
      const result =
        typeof value === 'string' && value !== 'bad'
          ? { value }
          : { issues: [{ message: 'Expected a string that is not "bad"' }] }
      return later ? Promise.resolve(result) : result
    },
  },
})

describe('channels: publishing with hooks that answer at once or later', () => {
  for (const later of [false, true]) {
    it(`authorizes, validates, reshapes and acknowledges in order (${later ? 'promises' : 'values'})`, async () => {
      const seen: string[] = []
      const answer = <T>(value: T) => (later ? Promise.resolve(value) : value)
      const channels = new Channels().topic('t/:name', {
        message: text(later),
        authorize: ({ params }) => answer(params.name !== 'closed'),
        publish: ({ data }) => {
          seen.push(data)
          if (data === 'refuse') throw new ChannelError('nope', 'Refused')
          return answer(data === 'drop' ? undefined : `${data}!`)
        },
      })
      const app = new Hono().get('/', upgrade(channels, { subprotocols: [CHANNEL_PROTOCOL] }))
      const alice = await connect(app, '/', { protocols: [CHANNEL_PROTOCOL] })
      const bob = await connect(app, '/', { protocols: [CHANNEL_PROTOCOL] })
      bob.send('{"type":"subscribe","id":1,"topic":"t/a"}')
      expect(await json(bob)).toMatchObject({ type: 'subscribed', id: 1 })
      // Sent at once, one after the other: answered in the order sent.
      alice.send('{"type":"publish","id":1,"topic":"t/a","data":"one"}')
      alice.send('{"type":"publish","id":2,"topic":"t/closed","data":"two"}')
      alice.send('{"type":"publish","id":3,"topic":"t/a","data":"bad"}')
      alice.send('{"type":"publish","id":4,"topic":"t/a","data":"refuse"}')
      alice.send('{"type":"publish","id":5,"topic":"t/a","data":"drop"}')
      alice.send('{"type":"publish","topic":"t/a","data":"six"}')
      alice.send('{"type":"publish","id":7,"topic":"t/a","data":"seven"}')
      expect(await json(alice)).toEqual({ type: 'ack', id: 1 })
      expect(await json(alice)).toMatchObject({ type: 'error', id: 2, code: 'forbidden' })
      expect(await json(alice)).toMatchObject({ type: 'error', id: 3, code: 'invalid' })
      expect(await json(alice)).toMatchObject({ type: 'error', id: 4, code: 'nope' })
      expect(await json(alice)).toEqual({ type: 'ack', id: 5 })
      expect(await json(alice)).toEqual({ type: 'ack', id: 7 })
      expect(await json(bob)).toEqual({ type: 'message', topic: 't/a', data: 'one!' })
      expect(await json(bob)).toEqual({ type: 'message', topic: 't/a', data: 'six!' })
      expect(await json(bob)).toEqual({ type: 'message', topic: 't/a', data: 'seven!' })
      expect(seen).toEqual(['one', 'refuse', 'drop', 'six', 'seven'])
    })
  }
})

describe('channels: finding a topic by name', () => {
  it('gives a topic name to the first pattern that matches it, in the order they were defined', async () => {
    const seen: string[] = []
    const topic = (pattern: string) =>
      [
        pattern,
        {
          message: text(false),
          authorize: ({ params }: { params: Record<string, string> }) => {
            seen.push(`${pattern} ${JSON.stringify(params)}`)
            return true
          },
        },
      ] as const
    const channels = new Channels()
      .topic(...topic('rooms/:room'))
      .topic(...topic('rooms/lobby'))
      .topic(...topic('news'))
      .topic(...topic(':any'))
      .topic(...topic('news'))
    const app = new Hono().get('/', upgrade(channels, { subprotocols: [CHANNEL_PROTOCOL] }))
    const peer = await connect(app, '/', { protocols: [CHANNEL_PROTOCOL] })
    for (const [id, name] of ['rooms/lobby', 'news', 'weather', 'rooms/x'].entries()) {
      peer.send(`{"type":"publish","id":${id + 1},"topic":"${name}","data":"hi"}`)
      expect(await json(peer)).toEqual({ type: 'ack', id: id + 1 })
    }
    expect(seen).toEqual([
      'rooms/:room {"room":"lobby"}',
      'news {}',
      ':any {"any":"weather"}',
      'rooms/:room {"room":"x"}',
    ])
  })
})
