/**
 * The JSON framing the history tests give `useHistory({ frame })`, and how a test peer reads
 * it back: shared by the tests of one hub and of several hubs on a backplane.
 */
import type { Delivery, Position } from '../src/index.js'
import type { TestPeer } from '../src/testing.js'

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
