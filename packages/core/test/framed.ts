/**
 * The JSON framing the history tests give `useHistory({ frame })`, and how a test peer reads
 * it back: shared by the tests of one hub and of several hubs on a backplane. Also the stub
 * backplane of the recovery tests, whose sink the test drives and whose history it answers.
 */
import { Hono } from 'hono'
import {
  type Backplane,
  type BackplaneHistory,
  type BackplaneSink,
  createHub,
} from '../src/adapter.js'
import type { MessageData } from '../src/contracts.js'
import { type Conn, type Delivery, type Hub, type Position, upgrade } from '../src/index.js'
import { DELIVER } from '../src/internal.js'
import type { SequencerHost } from '../src/sequencer.js'
import type { Subscriber } from '../src/subscriber.js'
import { connect, type TestPeer } from '../src/testing.js'

/** What a test peer reads: a message, a gap notice, or the app's answer to its subscribe. */
export interface Framed {
  t: 'm' | 'g' | 'sub'
  e?: string
  o?: number
  d?: string
  r?: string
  position?: Position
  recovered?: boolean
}

/** Frames a delivery as JSON: `{ t: 'm', e, o, d }` for a message, `{ t: 'g', e, o, r }` for a gap. */
export const frameAsJson = (d: Delivery): string =>
  JSON.stringify(
    d.type === 'message'
      ? { t: 'm', e: d.position?.epoch, o: d.position?.offset, d: d.data }
      : { t: 'g', e: d.position.epoch, o: d.position.offset, r: d.reason },
  )

/** The next framed item the peer reads. */
export async function next(peer: TestPeer): Promise<Framed> {
  return JSON.parse((await peer.read()).data as string) as Framed
}

/** Reads until the `sub` answer, and returns what came before it and the answer. */
export async function untilSubscribed(peer: TestPeer): Promise<{ before: Framed[]; sub: Framed }> {
  const before: Framed[] = []
  for (;;) {
    const item = await next(peer)
    if (item.t === 'sub') return { before, sub: item }
    before.push(item)
  }
}

/** Reads `count` framed items. */
export async function readFramed(peer: TestPeer, count: number): Promise<Framed[]> {
  const out: Framed[] = []
  for (let i = 0; i < count; i++) out.push(await next(peer))
  return out
}

/** The offsets of framed items, a gap as `gap<offset>`. */
export const offsets = (items: Framed[]): (number | string | undefined)[] =>
  items.map((item) => (item.t === 'g' ? `gap${item.o}` : item.o))

/** The integers from `from` to `to`, both included. */
export const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i)

/** Frames a delivery as JSON without its epoch: `{ t: 'm', o, d }` or `{ t: 'g', o, r }`. */
export const frameOffsets = (d: Delivery): string =>
  JSON.stringify(
    d.type === 'message'
      ? { t: 'm', o: d.position?.offset, d: d.data }
      : { t: 'g', o: d.position.offset, r: d.reason },
  )

const silent = { error: () => {} }

/**
 * A backplane whose pub/sub does nothing by itself: the test delivers through its sink, which
 * `sink()` returns once the hub started it. `read` answers the history's reads.
 */
export function stubBackplane(read: BackplaneHistory['read']): {
  backplane: Backplane
  sink(): BackplaneSink
} {
  let started: BackplaneSink | undefined
  const backplane: Backplane = {
    start: (sink) => {
      started = sink
    },
    subscribe: async () => {},
    unsubscribe: async () => {},
    publish: () => {},
    close: async () => {},
    history: { publish: () => {}, read },
  }
  return { backplane, sink: () => started as BackplaneSink }
}

/** A hub on `backplane` whose topics keep history, framed by {@link frameOffsets}. */
export async function historyHub(backplane: Backplane): Promise<Hub> {
  const hub = createHub({ logger: silent })
  await hub.topics.useBackplane(backplane)
  hub.topics.useHistory({ history: () => ({ size: 100, ttl: 60_000 }), frame: frameOffsets })
  return hub
}

/**
 * A peer of `hub` whose connection subscribes to `t` (from `since` when given), sends
 * `{ t: 'sub', ...subscription }`, and reads on. `opened` sees the connection first.
 */
export function subscriber(
  hub: Hub,
  since?: Position,
  opened?: (conn: Conn) => void,
): Promise<TestPeer> {
  const app = new Hono()
  app.get(
    '/',
    upgrade(
      {
        async serve(conn) {
          opened?.(conn)
          const subscription = await (since ? conn.subscribe('t', { since }) : conn.subscribe('t'))
          await conn.send(JSON.stringify({ t: 'sub', ...subscription }))
          for await (const _ of conn);
        },
      },
      { logger: silent },
    ),
  )
  return connect(app, '/', { hub })
}

/**
 * A sequencer host over topic `t`'s history of `m1` to `m<latest>` in `epoch`, every read
 * complete, framed by `frame`: for the tests that drive a `Sequencer`'s recovery directly.
 */
export function recoveryHost(
  epoch: string,
  latest: number,
  frame: SequencerHost['frame'] = frameOffsets,
): SequencerHost {
  return {
    fanOut: () => {},
    frame,
    raw: false,
    read: (since) => ({
      epoch,
      offset: latest,
      messages: since
        ? range(since.offset + 1, latest).map((offset) => ({ offset, data: `m${offset}` }))
        : [],
      complete: true,
    }),
    gap: () => {},
    fault: () => {},
    joinLive: () => {},
  }
}

/**
 * A subscriber stub for a recovery: it drops the framed messages `dropped` names (unless the
 * delivery must go out), and records in `sent` what goes out, a notice before its message.
 */
export function droppingSubscriber(dropped: (message: Framed) => boolean): {
  subscriber: Subscriber
  sent: Framed[]
} {
  const sent: Framed[] = []
  const subscriber = {
    [DELIVER](data: MessageData, notice?: () => MessageData | undefined, always?: boolean) {
      const message = JSON.parse(data as string)
      if (!always && dropped(message)) return false
      const framed = notice?.()
      if (framed !== undefined) sent.push(JSON.parse(framed as string))
      sent.push(message)
      return true
    },
  } as unknown as Subscriber
  return { subscriber, sent }
}
