/**
 * Waking a `HandshakeObject` in real workerd (Miniflare on 127.0.0.1): sockets on routes that
 * Hono composed in every way come back, and the object's topics and connections are whole
 * before an `alarm()` or an RPC method uses them. workerd evicts an idle object after about
 * 10 s and the pinned Miniflare cannot force it, so the file waits once, in `beforeAll`.
 */
import { RawPeer } from '@handshake/conformance'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Census } from './compose-worker.js'
import { bundleWorker, type RunningWorker, startWorker } from './miniflare.js'

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Each way Hono composes a route, and the path of its WebSocket route. */
const WAYS = {
  route: '/routed/ws',
  basePath: '/based/ws',
  mount: '/mounted/ws',
  mountHelper: '/helper/ws',
  middleware: '/guarded/ws',
} as const
type Way = keyof typeof WAYS

let worker: RunningWorker
const peers = new Map<Way, RawPeer>()
let before: Census
/** What each peer received while the object slept and woke, before the tests send anything. */
const received = new Map<Way, string[]>()

async function census(): Promise<Census> {
  return (await (await fetch(`${worker.url}/rpc/census`)).json()) as Census
}

async function text(peer: RawPeer): Promise<string> {
  return String((await peer.read(5000)).data)
}

beforeAll(async () => {
  worker = await startWorker({
    script: await bundleWorker('./compose-worker.ts'),
    durableObjects: { COMPOSED: 'Composed' },
  })
  for (const [way, path] of Object.entries(WAYS) as [Way, string][]) {
    const peer = await RawPeer.connect(worker.url, path, { answerPings: false })
    peers.set(way, peer)
    // Each route answers before the object sleeps.
    peer.send('hello')
    expect(await text(peer)).toBe(`${way}: hello`)
  }
  before = await census()
  expect(before).toEqual({ constructed: 1, connections: 5, subscribers: 5 })
  // The alarm runs after the eviction (about 10 s idle), in a new incarnation of the object.
  expect((await fetch(`${worker.url}/alarm?in=14000`, { method: 'POST' })).status).toBe(204)
  await sleep(17_000)
  for (const [way, peer] of peers) {
    const messages: string[] = []
    received.set(way, messages)
    messages.push(await text(peer).catch((err: Error) => `nothing: ${err.message}`))
  }
}, 60_000)

afterAll(async () => {
  for (const peer of peers.values()) peer.vanish()
  await worker?.stop()
})

describe('after a wake, the object is whole before any use', () => {
  it('an alarm() that publishes reaches every socket accepted before the wake', () => {
    for (const way of Object.keys(WAYS) as Way[]) {
      expect(received.get(way), way).toEqual([`alarm in incarnation ${before.constructed + 1}`])
    }
  })

  it('an RPC method sees every connection and subscriber', async () => {
    expect(await census()).toEqual({
      constructed: before.constructed + 1,
      connections: 5,
      subscribers: 5,
    })
  })
})

describe('a woken socket finds its upgrader however Hono composed its route', () => {
  for (const way of Object.keys(WAYS) as Way[]) {
    it(`${way}: ${WAYS[way]}`, async () => {
      const peer = peers.get(way)!
      peer.send('after the wake')
      const answer = await Promise.race([
        text(peer),
        peer.closeFrame.then((frame) => `closed ${frame?.code} ${frame?.reason}`),
      ])
      expect(answer).toBe(`${way}: after the wake`)
    })
  }
})

describe("the app's routes in the object", () => {
  it('get an execution context: c.executionCtx.waitUntil works', async () => {
    const response = await fetch(`${worker.url}/ctx`)
    expect(await response.text()).toBe('has an execution context')
    expect(response.status).toBe(200)
  })
})
