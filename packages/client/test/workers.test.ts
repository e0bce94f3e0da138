import { expect, it } from 'vitest'
import WebSocket from 'ws'
import { createClient, type WebSocketConstructor } from '../src/index.js'
import type { channels } from './app.js'
import { startRuntime } from './runtimes.js'
import { clientSuite, until } from './suite.js'

const start = () => startRuntime('workerd')

clientSuite({
  name: 'workerd (a Durable Object)',
  start,
  clients: [{ name: 'ws', WebSocket: WebSocket as unknown as WebSocketConstructor }],
})

it("keeps its subscription and its connection data through the object's hibernation", async () => {
  const worker = await start()
  try {
    // No heartbeat while idle: nothing wakes the object.
    const client = createClient<typeof channels>(`${worker.url}/ws?name=sleeper`, {
      WebSocket: WebSocket as unknown as WebSocketConstructor,
      heartbeatInterval: 60_000,
    })
    const got: unknown[] = []
    let subscribed = false
    client.subscribe('rooms/sleep', {
      message: (data) => got.push(data),
      subscribed: () => (subscribed = true),
    })
    await until(() => subscribed, 'the subscription')
    const constructed = async () =>
      (await (await fetch(`${worker.url}/constructed`)).json()) as number
    const before = await constructed()
    // workerd evicts an idle object after about 10 s.
    await new Promise((resolve) => setTimeout(resolve, 12_000))
    const response = await fetch(`${worker.url}/publish/sleep`, {
      method: 'POST',
      body: JSON.stringify({ text: 'wake up' }),
    })
    expect(await response.json()).toEqual({ subscribers: 1 })
    expect(await constructed()).toBe(before + 1)
    await until(() => got.length === 1, 'the message after the wake')
    expect(got).toEqual([{ text: 'wake up' }])
    // The connection's data came back with it: the publish hook signs with the stored name.
    const other = createClient<typeof channels>(`${worker.url}/ws?name=other`, {
      WebSocket: WebSocket as unknown as WebSocketConstructor,
    })
    let ready = false
    other.subscribe('rooms/sleep', {
      message: (data) => got.push(data),
      subscribed: () => (ready = true),
    })
    await until(() => ready, "the other's subscription")
    await client.publish('rooms/sleep', { text: 'still me' }, { ack: true })
    await until(() => got.length === 2, 'the signed message')
    expect(got[1]).toEqual({ text: 'still me', from: 'sleeper' })
    expect(await client.request('add', { a: 1, b: 2 })).toBe(3)
    expect(client.state.status).toBe('open')
    client.close()
    other.close()
  } finally {
    await worker.stop()
  }
}, 60_000)
