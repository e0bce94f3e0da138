/**
 * SPEC "Event controllers": every scenario of the suite again, served by event controllers
 * (`open`, `message`, `close`) from the routes under `/events`, plus what only they have to
 * prove: handlers that never overlap, a throw in `message()`, `close` after the handler in
 * flight.
 * @module
 */
import { InternalErrorMessage } from '@handshake/core'
import { describe, expect, it } from 'vitest'
import { EVENTS_PREFIX } from '../app.js'
import type { Harness, MemoryHarness, NetworkHarness } from '../targets.js'
import { afterServeScenarios } from './after-serve.js'
import { clientScenarios } from './clients.js'
import { closeScenarios } from './close.js'
import { connScenarios } from './conn.js'
import { faultScenarios } from './faults.js'
import { kitScenarios } from './kit.js'
import {
  closedWithin,
  expectEcho,
  type HarnessRef,
  newId,
  readText,
  waitForReport,
  withId,
} from './support.js'
import { upgradeScenarios } from './upgrade.js'
import { wireScenarios } from './wire.js'

/** What the network and memory harnesses add to {@link Harness}. */
type Extras = Pick<NetworkHarness, 'dialWith' | 'dialRaw'> & Pick<MemoryHarness, 'connectKit'>

/**
 * The same harness, with every scenario path under `prefix`: `/echo` reaches `/events/echo`.
 * Reports are shared (ids are unique), and so is the server.
 */
export function prefixed<H extends Harness>(harness: H, prefix: string): H {
  const at = (path: string) => `${prefix}${path}`
  const view = Object.create(harness) as Harness & Partial<Extras>
  const source = harness as Harness & Partial<Extras>
  view.dial = (path, options) => harness.dial(at(path), options)
  view.dialControlled = (path, options) => harness.dialControlled(at(path), options)
  view.request = (path, request) => harness.request(at(path), request)
  if (source.dialWith) {
    const dialWith = source.dialWith
    view.dialWith = (client, path, options) => dialWith(client, at(path), options)
  }
  if (source.dialRaw) {
    const dialRaw = source.dialRaw
    view.dialRaw = (path, options) => dialRaw(at(path), options)
  }
  if (source.connectKit) {
    const connectKit = source.connectKit
    view.connectKit = (path, options) => connectKit(at(path), options)
  }
  return view as H
}

/** What only an event controller has to prove, on every runtime. */
function handlerScenarios(harness: HarnessRef): void {
  it('never overlaps handlers: messages sent at once are handled one at a time, in order', async () => {
    const h = harness()
    const peer = await h.dial(withId('/overlap', newId('overlap')))
    for (const n of [1, 2, 3, 4]) peer.send(String(n))
    peer.send('done')
    const log = JSON.parse(await readText(peer)) as string[]
    expect(log).toEqual([
      'message 1',
      'end 1',
      'message 2',
      'end 2',
      'message 3',
      'end 3',
      'message 4',
      'end 4',
    ])
  })

  for (const [message, how] of [
    ['fail', 'synchronously'],
    ['fail later', 'asynchronously'],
  ] as const) {
    it(`logs a throw in message() (${how}) and closes with 1011; later messages are dropped`, async () => {
      const h = harness()
      const id = newId('message-throws')
      const peer = await h.dial(withId('/message-throws', id))
      await expectEcho(peer, 'first')
      peer.send(message)
      peer.send('after the failure')
      const close = await closedWithin(peer)
      // Deno resets TCP on data after its close frame: the peer may see 1006 there.
      if (h.differences.closeReachesSendingPeer) {
        expect(close).toEqual({ code: 1011, reason: InternalErrorMessage })
      } else {
        expect([1006, 1011]).toContain(close.code)
      }
      const report = await waitForReport(h, id, (r) => r.settled)
      expect(report.handlers).toEqual(['message first', `message ${message}`])
      expect(report.logged).toHaveLength(1)
      expect(report.logged[0]?.join(' ')).toMatch(/\n\s+at /)
      // The server ends with its own code on every runtime, even where the peer saw 1006.
      expect(report.readError?.code).toBe(1011)
    })
  }

  it('runs close once, after the message() in flight, when the peer leaves meanwhile', async () => {
    const h = harness()
    const id = newId('close-after-handler')
    const peer = await h.dial(withId('/close-after-handler', id))
    peer.send('slow')
    expect(await readText(peer)).toBe('started')
    peer.close(4100, 'leaving')
    await closedWithin(peer)
    const report = await waitForReport(h, id, (r) => r.settled)
    expect(report.handlers).toEqual(['message slow', 'end slow', 'close 4100'])
  })
}

/** Issue 18 #13: `close` never runs inside `message`, whenever the runtime reports the end. */
function closeInMessageScenarios(harness: HarnessRef, kind: Harness['kind']): void {
  for (const [query, how] of [
    ['', 'before its first await'],
    ['&sync=1', 'synchronously'],
  ] as const) {
    it(`runs close after a message() that closes ${how} (Bun ends the connection inside close())`, async () => {
      const h = harness()
      const id = newId('close-in-message')
      const peer = await h.dial(`${withId('/close-in-message', id)}${query}`)
      peer.send('x')
      expect((await closedWithin(peer)).code).toBe(4000)
      const report = await waitForReport(h, id, (r) => r.settled)
      expect(report.handlers).toEqual(['message x', 'end x', 'close 4000'])
    })
  }
  if (kind !== 'memory') return
  it('runs close after message() in the test kit, whose runtime can end the connection inside close() as Bun does', async () => {
    const h = harness() as MemoryHarness
    const id = newId('close-in-message-kit')
    const peer = await h.connectKit(withId('/close-in-message', id), { endsInClose: true })
    peer.send('x')
    expect(await peer.closed).toEqual({ code: 4000, reason: 'closed in message', wasClean: false })
    const report = await waitForReport(h, id, (r) => r.settled)
    expect(report.handlers).toEqual(['message x', 'end x', 'close 4000'])
  })
}

/**
 * Registers the suite's scenarios for event controllers: the same groups as for `serve`,
 * against the twin routes under `/events`, then the handler scenarios.
 */
export function eventControllerScenarios(harness: HarnessRef, kind: Harness['kind']): void {
  const events = () => prefixed(harness(), EVENTS_PREFIX)
  describe('upgrade', () => upgradeScenarios(events))
  describe('conn', () => connScenarios(events))
  describe('close handshake', () => closeScenarios(events))
  describe('after an error or a close in open()', () => afterServeScenarios(events))
  describe('protocol faults and vanished peers', () => faultScenarios(events))
  describe('handlers', () => {
    handlerScenarios(events)
    closeInMessageScenarios(events, kind)
  })
  if (kind === 'memory') {
    kitScenarios(events as () => MemoryHarness)
  } else {
    describe('network only', () => {
      wireScenarios(events as () => NetworkHarness)
      clientScenarios(events as () => NetworkHarness)
    })
  }
}
