/**
 * SPEC "Round 2 / Connections and shutdown": the graceful shutdown, written once in the core,
 * driven through each adapter's own `shutdown(options)`. Each scenario starts a server of its
 * own, since a shutdown is the end of one.
 * @module
 */
import { ShutdownMessage } from '@handshake/core'
import { expect, it } from 'vitest'
import { handshakeHeaders, openSocket, writeRequest } from '../http.js'
import { PeerUpgradeRejected } from '../peers.js'
import type { Harness, NetworkHarness } from '../targets.js'
import {
  closedWithin,
  expectEcho,
  floodUntilClosed,
  newId,
  sleep,
  waitForReadError,
  waitForReport,
  withId,
} from './support.js'

/** Starts a server of the scenario's own. */
export type StartHarness = () => Promise<Harness>

/** The deadline of the shutdowns that wait for a silent peer. */
const DEADLINE_MS = 1000
/** A deadline no scenario should reach: the shutdown must end well before it. */
const LONG_DEADLINE_MS = 8000
/** How late a loaded machine may be. */
const SLACK_MS = 1500

const GOING_AWAY = { code: 1001, reason: ShutdownMessage }
/** How long `/loop?cleanup=` works after its connection ended. */
const CLEANUP_MS = 400
/** How long `?after=` holds an upgrade's answer, the socket not yet open. */
const UPGRADE_HOLD_MS = 600

/** Runs `scenario` against a fresh server, and stops it after, whatever happened. */
async function withServer(start: StartHarness, scenario: (h: Harness) => Promise<void>) {
  const h = await start()
  try {
    await scenario(h)
  } finally {
    await h.cleanup()
    await h.stop()
  }
}

/** Times a shutdown: resolves with how long it took, in milliseconds. */
async function timed(shutdown: Promise<void>): Promise<number> {
  const started = Date.now()
  await shutdown
  return Date.now() - started
}

/** Registers the shutdown scenarios. */
export function shutdownScenarios(start: StartHarness): void {
  it('rejects an invalid code, reason or timeout with a RangeError: nothing is closed, the server keeps serving', async () => {
    await withServer(start, async (h) => {
      const peer = await h.dialControlled(withId('/echo', newId('shutdown-invalid')))
      await expectEcho(peer)
      for (const options of [
        { code: 1006 },
        { code: 1005 },
        { code: 2999 },
        { reason: 'é'.repeat(62) },
        { timeout: -1 },
      ]) {
        await expect(h.shutdown(options), JSON.stringify(options)).rejects.toMatchObject({
          name: 'RangeError',
        })
      }
      // Nothing was sent, the connection works, and new upgrades are still accepted.
      await expectEcho(peer)
      expect(await Promise.race([peer.closeFrame, sleep(100).then(() => 'none')])).toBe('none')
      await expectEcho(await h.dial(withId('/echo', newId('shutdown-invalid-after'))))
      // A valid shutdown still works after the refused ones.
      await h.shutdown({ timeout: LONG_DEADLINE_MS })
      expect(await peer.closeFrame).toMatchObject(GOING_AWAY)
    })
  })

  it("leaves another hub serving: one hub's shutdown closes its own connections only", async () => {
    await withServer(start, async (h) => {
      const closing = await h.dial(withId('/echo', newId('shutdown-hub')))
      const staying = await h.sibling.dial(withId('/echo', newId('shutdown-sibling')))
      await expectEcho(closing)
      await expectEcho(staying)
      await h.shutdown({ timeout: LONG_DEADLINE_MS })
      expect(await closedWithin(closing)).toMatchObject(GOING_AWAY)
      // The other hub's connection is untouched, and it still accepts upgrades (no 503).
      await expectEcho(staying)
      await expectEcho(await h.sibling.dial(withId('/echo', newId('shutdown-sibling-after'))))
    })
  })

  it('sends one close frame (1001 Server shutting down) to every connection, and resolves once the peers answered and serve settled', async () => {
    await withServer(start, async (h) => {
      const echoId = newId('shutdown-echo')
      const client = await h.dial(withId('/echo', echoId))
      await expectEcho(client)

      const elapsed = await timed(h.shutdown({ timeout: LONG_DEADLINE_MS }))

      expect(elapsed).toBeLessThan(LONG_DEADLINE_MS / 2)
      expect(await closedWithin(client)).toEqual(GOING_AWAY)
      // The close is a normal one for serve; clean where the runtime reads the peer's answer.
      const report = await h.report(echoId)
      expect(report?.readError).toMatchObject({
        code: 1001,
        wasClean: h.differences.awaitsCloseAnswer,
      })
      expect(report?.settled).toBe(true)
    })
  })

  // Issue 18 #23: the shutdown resolved while serve loops and close handlers still ran.
  for (const prefix of ['', '/events']) {
    const what = prefix ? 'a close handler' : 'a serve'
    it(`waits for ${what} that works ${CLEANUP_MS} ms after the end, within the deadline`, async () => {
      await withServer(start, async (h) => {
        const id = newId('shutdown-cleanup')
        const peer = await h.dial(withId(`${prefix}/loop?cleanup=${CLEANUP_MS}`, id))
        await expectEcho(peer)
        const elapsed = await timed(h.shutdown({ timeout: LONG_DEADLINE_MS }))
        // Read at once: serve (or close) had settled when the shutdown resolved.
        expect((await h.report(id))?.settled).toBe(true)
        expect(elapsed).toBeGreaterThanOrEqual(CLEANUP_MS - 50)
        expect(elapsed).toBeLessThan(LONG_DEADLINE_MS / 2)
        expect(await closedWithin(peer)).toEqual(GOING_AWAY)
      })
    })
  }

  it(`waits for a serve that ignores the end until the deadline (${DEADLINE_MS} ms), then resolves; serve still runs`, async () => {
    await withServer(start, async (h) => {
      const ignoringId = newId('shutdown-ignores-signal')
      const ignoring = await h.dialControlled(withId('/ignores-signal', ignoringId))
      await waitForReport(h, ignoringId, (report) => report.served)

      const elapsed = await timed(h.shutdown({ timeout: DEADLINE_MS }))

      expect(elapsed).toBeGreaterThanOrEqual(DEADLINE_MS - 50)
      expect(elapsed).toBeLessThan(DEADLINE_MS + SLACK_MS)
      expect(await ignoring.closeFrame).toMatchObject(GOING_AWAY)
      expect((await closedWithin(ignoring)).code).toBe(1001)
      if (ignoring.closeFramesReceived !== undefined) expect(ignoring.closeFramesReceived).toBe(1)
      // serve ignored the signal and still runs: nothing can stop it, the shutdown resolved.
      expect(await h.report(ignoringId)).toMatchObject({ served: true, settled: false })
    })
  })

  // Issue 18 #26: the loop's end was logged as a controller failure.
  it("ends a serve loop quietly when the server's own shutdown closes with 1012", async () => {
    await withServer(start, async (h) => {
      const id = newId('shutdown-1012')
      const peer = await h.dial(withId('/loop', id))
      await expectEcho(peer)
      await h.shutdown({ code: 1012, reason: 'Service Restart', timeout: LONG_DEADLINE_MS })
      expect(await closedWithin(peer)).toEqual({ code: 1012, reason: 'Service Restart' })
      const report = await waitForReport(h, id, (r) => r.settled)
      expect(report.logged).toEqual([])
    })
  })

  // Issue 18 #25: the upgrade between the adapter and open was not counted; Deno then cut it.
  it('waits for an upgrade on its way (accepted, not yet open), then closes it with 1001', async () => {
    await withServer(start, async (h) => {
      const id = newId('shutdown-upgrading')
      const dialing = h.dialControlled(withId(`/echo?after=${UPGRADE_HOLD_MS}`, id))
      dialing.catch(() => {})
      await waitForReport(h, id, (report) => report.held === true)
      const shutdown = timed(h.shutdown({ timeout: LONG_DEADLINE_MS }))
      const peer = await dialing
      expect(await peer.closeFrame).toMatchObject(GOING_AWAY)
      expect((await closedWithin(peer)).code).toBe(1001)
      expect(await shutdown).toBeLessThan(LONG_DEADLINE_MS / 2)
      const report = await waitForReport(h, id, (r) => r.settled)
      expect(report.readError).toMatchObject({ code: 1001 })
    })
  })

  it('does not wait for an accepted upgrade that never opens (the client left, or the upgrade failed)', async () => {
    await withServer(start, async (h) => {
      const id = newId('shutdown-left')
      if (h.kind === 'network' && !h.differences.silentAbandonedUpgrade) {
        // The client leaves while the upgrade's answer is held: its socket never opens.
        const { url } = h as NetworkHarness
        const socket = await openSocket(url)
        socket.on('error', () => {})
        writeRequest(socket, url, withId(`/echo?after=${UPGRADE_HOLD_MS}`, id), {
          headers: handshakeHeaders(),
        })
        await waitForReport(h, id, (report) => report.held === true)
        socket.destroy()
        await sleep(UPGRADE_HOLD_MS + 200)
      } else {
        // In memory, and where the runtime tells nothing of a client that left (Deno: see
        // silentAbandonedUpgrade): the upgrader accepted it, then upgradeHeaders failed it (500).
        const failed = await h.dialControlled(withId('/handshake-header?name=Upgrade', id)).then(
          () => undefined,
          (err: unknown) => err,
        )
        expect(failed).toMatchObject({ status: 500 })
      }
      expect(await timed(h.shutdown({ timeout: LONG_DEADLINE_MS }))).toBeLessThan(
        LONG_DEADLINE_MS / 2,
      )
    })
  })

  it(`waits for a silent peer until the deadline (${DEADLINE_MS} ms), then tears it down, and resolves by the deadline`, async () => {
    await withServer(start, async (h) => {
      const id = newId('shutdown-silent')
      const peer = await h.dialControlled(withId('/echo', id), { answerClose: false })
      await expectEcho(peer)
      const started = Date.now()
      const elapsed = await timed(h.shutdown({ timeout: DEADLINE_MS }))
      const frame = await peer.closeFrame
      expect(frame).toMatchObject(GOING_AWAY)
      const report = await waitForReadError(h, id)
      if (!h.differences.awaitsCloseAnswer) {
        // The documented difference (Bun): the connection ends as the frame is sent, so a
        // silent peer holds nothing.
        expect(elapsed).toBeLessThan(DEADLINE_MS)
        expect(report.readError).toMatchObject({ code: 1001, wasClean: false })
        await closedWithin(peer)
        return
      }
      expect(elapsed).toBeGreaterThanOrEqual(DEADLINE_MS - 50)
      expect(elapsed).toBeLessThan(DEADLINE_MS + SLACK_MS)
      expect(report.readError).toMatchObject({ code: 1006, wasClean: false })
      expect(report.readError?.reason).toMatch(/did not answer the shutdown/)
      if (h.differences.terminateOnTimeout) {
        const ended = await Promise.race([peer.ended, sleep(SLACK_MS).then(() => undefined)])
        expect(ended, 'the connection was never torn down').toBeDefined()
        expect((ended as number) - started).toBeGreaterThanOrEqual(DEADLINE_MS - 50)
      } else {
        // The runtime cannot tear one connection down (Deno, workerd): the server settled at
        // the deadline, and the TCP connection was not cut before it.
        const ended = await Promise.race([peer.ended, sleep(0).then(() => undefined)])
        if (ended !== undefined) expect(ended - started).toBeGreaterThanOrEqual(DEADLINE_MS - 50)
      }
    })
  })

  it("resumes a socket paused under a flood, so that the flooding peer's answer is read", async () => {
    await withServer(start, async (h) => {
      const id = newId('shutdown-flood')
      const peer = await h.dialControlled(withId('/hold', id))
      const flooding = floodUntilClosed(peer)
      // Long enough for the flood to go past the route's small inbound bound.
      await sleep(500)
      if (!h.differences.pauseInbound) {
        // The documented difference (Deno, workerd): the flood closed the connection with
        // 1008 before any shutdown, which then has nothing to wait for.
        const report = await waitForReadError(h, id)
        expect(report.readError).toMatchObject({ code: 1008 })
        expect(await timed(h.shutdown({ timeout: LONG_DEADLINE_MS }))).toBeLessThan(SLACK_MS)
        await flooding
        return
      }
      expect(await h.report(id)).toMatchObject({ served: true, settled: false })
      const elapsed = await timed(h.shutdown({ timeout: LONG_DEADLINE_MS }))
      await flooding
      expect(await peer.closeFrame).toMatchObject(GOING_AWAY)
      // The peer's answer came through the unread flood, long before the deadline.
      expect(elapsed).toBeLessThan(LONG_DEADLINE_MS / 2)
      const report = await waitForReadError(h, id)
      expect(report.readError).toMatchObject({
        code: 1001,
        wasClean: h.differences.awaitsCloseAnswer,
      })
    })
  })

  it('answers an upgrade that reaches the upgrader during the shutdown with 503, and closes one that opens during it', async () => {
    await withServer(start, async (h) => {
      const refusedId = newId('shutdown-held')
      const lateId = newId('shutdown-late-open')
      const hold = 1500
      const refused = h.dialControlled(withId(`/echo?hold=${hold}`, refusedId)).then(
        () => undefined,
        (err: unknown) => err,
      )
      const late = h.dialControlled(withId(`/late-open?delay=${hold}`, lateId))
      late.catch(() => {})
      // A silent peer keeps the shutdown going until its deadline, wherever the runtime waits.
      const silent = await h.dialControlled(withId('/echo', newId('shutdown-holder')), {
        answerClose: false,
      })
      await waitForReport(h, refusedId, (report) => report.held === true)
      await waitForReport(h, lateId, (report) => report.held === true)

      const shutdown = h.shutdown({ timeout: 2 * hold })
      await sleep(50)
      // A brand-new connection during the shutdown.
      const fresh = await h.dialControlled(withId('/echo', newId('shutdown-new'))).then(
        () => undefined,
        (err: unknown) => err,
      )
      if (h.differences.listensDuringShutdown) {
        expect(fresh).toBeInstanceOf(PeerUpgradeRejected)
        expect(fresh).toMatchObject({ status: 503 })
      } else {
        // The documented difference (Node, Bun): the server stopped listening first.
        expect(fresh).toBeInstanceOf(Error)
        expect(fresh).not.toBeInstanceOf(PeerUpgradeRejected)
      }

      const rejection = await refused
      expect(rejection).toBeInstanceOf(PeerUpgradeRejected)
      const { status, body } = rejection as PeerUpgradeRejected
      expect(status).toBe(503)
      expect(JSON.parse(body)).toEqual({ error: 'Service Unavailable' })

      const opened = await late
      expect(await opened.closeFrame).toMatchObject(GOING_AWAY)
      expect((await closedWithin(opened)).code).toBe(1001)
      expect(await silent.closeFrame).toMatchObject(GOING_AWAY)
      await shutdown
    })
  })
}
