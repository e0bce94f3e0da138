/**
 * A client's publish on a topic name the core refuses (over `maxTopicLength`, or with a lone
 * surrogate) is the client's mistake, as the same name in a subscribe is: an `invalid` reply
 * that counts toward `maxInvalidFrames`, not an `internal` one reported to `onError`.
 */
import { Hono } from 'hono'
import { expect, it } from 'vitest'
import { CHANNEL_PROTOCOL, Channels, type StandardSchemaV1 } from '../src/channels.js'
import { upgrade } from '../src/index.js'
import { connect, type TestPeer } from '../src/testing.js'

const anything: StandardSchemaV1<unknown> = {
  '~standard': { version: 1, vendor: 'test', validate: (value: unknown) => ({ value }) },
}

async function json(peer: TestPeer): Promise<Record<string, unknown>> {
  const message = await peer.read()
  if (message.type !== 'text') throw new Error('expected text')
  return JSON.parse(message.data)
}

for (const later of [false, true]) {
  it(`answers a publish on a refused topic name with invalid, counted as garbage (${later ? 'async' : 'sync'} hooks)`, async () => {
    const reported: unknown[] = []
    const channels = new Channels({
      onError: (err) => reported.push(err),
      maxInvalidFrames: 3,
    }).topic('rooms/:room', {
      message: anything,
      ...(later ? { authorize: async () => true } : {}),
    })
    const app = new Hono().get(
      '/',
      upgrade(channels, { subprotocols: [CHANNEL_PROTOCOL], maxTopicLength: 32 }),
    )
    const peer = await connect(app, '/', { protocols: [CHANNEL_PROTOCOL] })
    const long = `rooms/${'x'.repeat(40)}`
    peer.send(`{"type":"publish","id":1,"topic":"${long}","data":1}`)
    expect(await json(peer)).toMatchObject({ type: 'error', id: 1, code: 'invalid' })
    peer.send('{"type":"publish","id":2,"topic":"rooms/\\ud800","data":1}')
    expect(await json(peer)).toMatchObject({ type: 'error', id: 2, code: 'invalid' })
    // The same names in a subscribe: the same answer.
    peer.send(`{"type":"subscribe","id":3,"topic":"${long}"}`)
    // The third garbage reply in a row closes the connection.
    expect(await peer.closed).toMatchObject({ code: 1008 })
    expect(reported).toEqual([])
  })
}
