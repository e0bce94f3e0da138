/**
 * Property-based tests of the close-handshake state machine, driven through the test kit: any
 * interleaving of local close, peer close, a peer that never answers plus the timeout, vanish,
 * fault, data and the end of `serve` ends with at most one close frame written by the core,
 * exactly one close frame on the wire unless the peer vanished first, one final state
 * (`closed`), and every pending read, send and close settled.
 */
import { CloseError, type Conn, type Controller, upgrade } from '@handshake/core'
import { connect, type TestPeer } from '@handshake/core/testing'
import fc from 'fast-check'
import { Hono } from 'hono'
import { describe, expect, it } from 'vitest'

type Command =
  | { kind: 'serverClose'; code: number }
  | { kind: 'peerClose'; code: number | undefined }
  | { kind: 'silentPeer' }
  | { kind: 'vanish' }
  | { kind: 'fault'; code: 1002 | 1007 }
  | { kind: 'peerSend' }
  | { kind: 'serverSend' }
  | { kind: 'serverRead' }
  | { kind: 'serveEnds'; how: 'return' | 'throw' }
  | { kind: 'wait' }

/** A command, and whether the driver lets everything it started settle before the next one. */
type Step = { command: Command; settle: boolean }

const command: fc.Arbitrary<Command> = fc.oneof(
  fc.record({ kind: fc.constant('serverClose' as const), code: fc.constantFrom(1000, 1011, 4000) }),
  fc.record({
    kind: fc.constant('peerClose' as const),
    code: fc.constantFrom(1000, 4001, undefined),
  }),
  fc.constant({ kind: 'silentPeer' as const }),
  fc.constant({ kind: 'vanish' as const }),
  fc.record({
    kind: fc.constant('fault' as const),
    code: fc.constantFrom(1002 as const, 1007 as const),
  }),
  fc.constant({ kind: 'peerSend' as const }),
  fc.constant({ kind: 'serverSend' as const }),
  fc.constant({ kind: 'serverRead' as const }),
  fc.record({
    kind: fc.constant('serveEnds' as const),
    how: fc.constantFrom('return' as const, 'throw' as const),
  }),
  fc.constant({ kind: 'wait' as const }),
)

const steps = fc.array(fc.record({ command, settle: fc.boolean() }), {
  minLength: 1,
  maxLength: 12,
})

const STATES = ['open', 'closing', 'closed'] as const

/** Lets every microtask and a timer turn run. */
const flush = () => new Promise((resolve) => setTimeout(resolve, 0))
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

type Outcome = { ok: true } | { ok: false; error: unknown }

/** Handles a promise at once (so no rejection goes unhandled) and keeps how it settled. */
function outcome(promise: Promise<unknown>): Promise<Outcome> {
  return promise.then(
    () => ({ ok: true }),
    (error: unknown) => ({ ok: false, error }),
  )
}

/** Resolves with `settled: false` when the promise is still pending after `ms`. */
async function settledWithin<T>(promise: Promise<T>, ms: number) {
  let timer: ReturnType<typeof setTimeout> | undefined
  const late = new Promise<{ settled: false }>((resolve) => {
    timer = setTimeout(() => resolve({ settled: false }), ms)
  })
  const result = await Promise.race([
    promise.then((value) => ({ settled: true as const, value })),
    late,
  ])
  clearTimeout(timer)
  return result
}

/** A controller whose `serve` holds the connection until the test ends it. */
function drivenController() {
  let resolveConn!: (conn: Conn) => void
  let endServe!: (how: 'return' | 'throw') => void
  const conn = new Promise<Conn>((resolve) => {
    resolveConn = resolve
  })
  const ending = new Promise<'return' | 'throw'>((resolve) => {
    endServe = resolve
  })
  let settled = false
  const controller: Controller = {
    async serve(connection) {
      resolveConn(connection)
      try {
        if ((await ending) === 'throw') throw new Error('serve failed on purpose')
      } finally {
        settled = true
      }
    },
  }
  return { controller, conn, endServe, isSettled: () => settled }
}

/** Runs one interleaving and checks every invariant. */
async function run(script: Step[], closeHandshakeTimeout: number): Promise<void> {
  const driven = drivenController()
  const logged: unknown[] = []
  const app = new Hono().get(
    '/',
    upgrade(driven.controller, {
      closeHandshakeTimeout,
      logger: { error: (...args) => logged.push(args) },
    }),
  )
  const peer: TestPeer = await connect(app, '/')
  const conn = await driven.conn

  // Count the close frames the core asks the runtime to write.
  const socket = peer.socket
  const writeClose = socket.close.bind(socket)
  const closeCalls: number[] = []
  socket.close = (code, reason) => {
    closeCalls.push(code)
    writeClose(code, reason)
  }
  let frameReceived = false
  let ended = false
  void peer.closeFrame.then(() => {
    frameReceived = true
  })
  void peer.closed.then(() => {
    ended = true
  })

  const reads: Promise<Outcome>[] = []
  const sends: Promise<Outcome>[] = []
  const closes: Promise<Outcome>[] = []
  let readPending = false
  let endIssued = false // a peer close, fault or end of serve is on its way
  let expectFrame: 'one' | 'none' | 'at most one' = 'one'
  const states: string[] = [conn.state]

  for (const { command: step, settle } of script) {
    switch (step.kind) {
      case 'serverClose':
        closes.push(outcome(conn.close(step.code, 'server closes')))
        break
      case 'peerClose':
        endIssued = true
        peer.close(step.code, step.code === undefined ? '' : 'peer closes')
        break
      case 'silentPeer':
        peer.answerClose = false
        break
      case 'vanish':
        // closeCalls is synchronous; the flags lag by a microtask.
        if (!frameReceived && closeCalls.length === 0 && !ended && expectFrame === 'one') {
          // Until the vanish is delivered, the server may still write its close frame.
          expectFrame = endIssued || !settle ? 'at most one' : 'none'
        }
        peer.vanish()
        break
      case 'fault':
        endIssued = true
        peer.fault(step.code, 'fault on purpose')
        break
      case 'peerSend':
        try {
          peer.send('from peer')
        } catch {
          // The peer has closed: a real client cannot send either.
        }
        break
      case 'serverSend':
        sends.push(outcome(conn.send('from server')))
        break
      case 'serverRead':
        if (!readPending) {
          readPending = true
          reads.push(
            outcome(
              conn.read().finally(() => {
                readPending = false
              }),
            ),
          )
        }
        break
      case 'serveEnds':
        endIssued = true
        driven.endServe(step.how)
        break
      case 'wait':
        await sleep(closeHandshakeTimeout + 5)
        break
    }
    if (settle) await flush()
    states.push(conn.state)
  }

  // The end: serve returns (if it has not), the upgrader closes, the timeout bounds the wait.
  driven.endServe('return')
  const end = await settledWithin(peer.closed, closeHandshakeTimeout + 2000)
  expect(end.settled, 'the peer saw the end').toBe(true)
  await flush()
  states.push(conn.state)

  // One final state, reached without going back.
  expect(conn.state).toBe('closed')
  const ranks = states.map((state) => STATES.indexOf(state as (typeof STATES)[number]))
  expect(ranks).toEqual([...ranks].sort((a, b) => a - b))

  // The core wrote at most one close frame, and the wire saw exactly one unless the peer vanished.
  expect(closeCalls.length).toBeLessThanOrEqual(1)
  if (expectFrame === 'one') expect(frameReceived).toBe(true)
  if (expectFrame === 'none') {
    expect(frameReceived).toBe(false)
    expect(closeCalls).toEqual([])
  }

  // Every pending read, send and close settled; reads and sends with the connection's end.
  // Messages that arrived before the end are still read first, then the end's CloseError.
  let final: unknown
  for (let i = 0; i <= script.length; i++) {
    final = await conn.read().then(
      () => undefined,
      (err: unknown) => err,
    )
    if (final !== undefined) break
  }
  expect(final).toBeInstanceOf(CloseError)
  expect(await conn.read().catch((err: unknown) => err)).toBe(final)
  for (const read of [...reads, ...sends]) {
    const result = await settledWithin(read, 1000)
    expect(result.settled).toBe(true)
    if (result.settled && !result.value.ok) expect(result.value.error).toBeInstanceOf(CloseError)
  }
  for (const close of closes) {
    const result = await settledWithin(close, 1000)
    expect(result).toMatchObject({ settled: true, value: { ok: true } })
  }
  expect(driven.isSettled(), 'serve settled').toBe(true)
  await expect(conn.send('after the end')).rejects.toBeInstanceOf(CloseError)
}

describe('close-handshake state machine (fast-check, through the test kit)', () => {
  it('ends every interleaving with one close frame, one final state, and nothing pending', async () => {
    await fc.assert(
      fc.asyncProperty(steps, fc.constantFrom(0, 15), async (script, timeout) => {
        await run(script, timeout)
      }),
      { numRuns: 150 },
    )
  })

  it('ends a close the peer never answers at the timeout, by terminating', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(1000, 1011, 4000), async (code) => {
        const driven = drivenController()
        const app = new Hono().get('/', upgrade(driven.controller, { closeHandshakeTimeout: 20 }))
        const peer = await connect(app, '/', { answerClose: false })
        const conn = await driven.conn
        const started = Date.now()
        await conn.close(code)
        expect(Date.now() - started).toBeGreaterThanOrEqual(15)
        expect(peer.terminated).toBe(true)
        expect(await peer.closed).toMatchObject({ code, wasClean: false })
        await expect(conn.read()).rejects.toMatchObject({ code: 1006, wasClean: false })
        driven.endServe('return')
      }),
      { numRuns: 10 },
    )
  })
})
