/**
 * The conformance suite: every scenario of SPEC.md "Behaviour", written once, run against the
 * test kit in memory and against each runtime over the network.
 *
 * ```ts
 * // packages/adapter-x/test/conformance.test.ts
 * import { conformanceSuite } from '@handshake/conformance'
 * conformanceSuite({
 *   name: 'x',
 *   start: async () => startMyRuntime(), // serves createConformanceApp() on 127.0.0.1
 *   differences: { ping: true, terminateOnTimeout: true, pauseInbound: false, upgradeHeaders: true },
 * })
 * ```
 * @module
 */
import { afterAll, afterEach, beforeAll, describe } from 'vitest'
import { afterServeScenarios } from './scenarios/after-serve.js'
import { clientScenarios } from './scenarios/clients.js'
import { closeScenarios } from './scenarios/close.js'
import { connScenarios } from './scenarios/conn.js'
import { eventControllerScenarios } from './scenarios/events.js'
import { faultScenarios } from './scenarios/faults.js'
import { historyScenarios } from './scenarios/history.js'
import { kitScenarios } from './scenarios/kit.js'
import { messageLimitScenarios } from './scenarios/limits.js'
import { shutdownScenarios } from './scenarios/shutdown.js'
import { topicScenarios } from './scenarios/topics.js'
import { upgradeScenarios } from './scenarios/upgrade.js'
import { wireScenarios } from './scenarios/wire.js'
import {
  type Harness,
  isMemoryTarget,
  type MemoryHarness,
  memoryHarness,
  type NetworkHarness,
  networkHarness,
  type Target,
} from './targets.js'

export type { CloseInfo, ServerReport } from './app.js'
export {
  ALLOWED_ORIGIN,
  createConformanceApp,
  DEBUG_ERROR_MESSAGE,
  EVENTS_PREFIX,
  findReport,
  SERVER_SUBPROTOCOLS,
  SHORT_CLOSE_TIMEOUT_MS,
  SLOW_READER_DELAY_MS,
  SMALL_INBOUND_BUFFER,
  SMALL_MAX_MESSAGE_SIZE,
} from './app.js'
export {
  BACKPLANE_CLIENTS,
  type BackplaneClient,
  type BackplaneTarget,
  backplaneSuite,
} from './backplane.js'
export {
  type BackplaneHistoryTarget,
  backplaneHistorySuite,
  type HistoryInstance,
} from './backplane-history.js'
export {
  type BackplanePresenceTarget,
  backplanePresenceSuite,
  type PresenceInstance,
} from './backplane-presence.js'
export {
  answerControl,
  ChildControl,
  type ControlAnswer,
  type ControlCommand,
  errorFromChild,
} from './control.js'
export { encodeFrame, type Frame, FrameDecoder, type FrameSpec, Opcode } from './frames.js'
export { type HttpAnswer, handshakeHeaders, type RawRequest, rawRequest } from './http.js'
export {
  type ClientKind,
  type ControlledPeer,
  connectUndici,
  connectWs,
  type DialOptions,
  faultCode,
  type Peer,
  type PeerClose,
  PeerClosedError,
  type PeerMessage,
  PeerUpgradeRejected,
  type ProtocolFault,
  type ReceivedClose,
} from './peers.js'
export { RawPeer, type RawPeerOptions } from './raw-peer.js'
export { type ServerProcess, startServerProcess } from './server-process.js'
export {
  type Harness,
  type MemoryHarness,
  type MemoryTarget,
  memoryHarness,
  memoryTarget,
  type NetworkHarness,
  type NetworkTarget,
  networkHarness,
  type PausedPeer,
  type RunningServer,
  type RuntimeDifferences,
  type Target,
} from './targets.js'
export {
  BURST_MESSAGE_BYTES,
  MAX_BURST_MESSAGES,
  SMALL_PUBLISH_BUFFER,
} from './topics-app.js'

/**
 * Registers the conformance scenarios as vitest `describe`/`it` blocks, grouped by the spec's
 * sections. A network target is started once before them and stopped after; the connections a
 * scenario leaves open are dropped after it.
 *
 * Every scenario both kinds of target can express runs on both. Raw-TCP protocol faults and
 * undici's `WebSocket` run on network targets only; the test kit's own views (terminated,
 * wasClean) on the memory target only. Each {@link RuntimeDifferences} flag is asserted both ways.
 *
 * @param target - a {@link NetworkTarget} (`{ name, start, differences }`) or {@link memoryTarget}
 */
export function conformanceSuite(target: Target): void {
  describe(`conformance: ${target.name}`, () => {
    let current: Harness | undefined
    const harness = (): Harness => {
      if (!current) throw new Error(`The ${target.name} target did not start`)
      return current
    }
    beforeAll(async () => {
      current = isMemoryTarget(target) ? memoryHarness(target) : await networkHarness(target)
    })
    afterEach(async () => {
      await current?.cleanup()
    })
    afterAll(async () => {
      await current?.cleanup()
      await current?.stop()
      current = undefined
    })

    describe('upgrade', () => upgradeScenarios(harness))
    describe('conn', () => connScenarios(harness))
    describe('close handshake', () => closeScenarios(harness))
    describe('after serve', () => afterServeScenarios(harness))
    describe('protocol faults and vanished peers', () => faultScenarios(harness))
    describe('topics', () => topicScenarios(harness))
    describe('history and recovery', () => historyScenarios(harness))
    // Each shutdown is the end of a server: every scenario starts one of its own.
    describe('shutdown', () =>
      shutdownScenarios(async () =>
        isMemoryTarget(target) ? memoryHarness(target) : await networkHarness(target),
      ))
    if (isMemoryTarget(target)) {
      kitScenarios(harness as () => MemoryHarness)
    } else {
      describe('network only', () => {
        wireScenarios(harness as () => NetworkHarness)
        messageLimitScenarios(harness as () => NetworkHarness)
        clientScenarios(harness as () => NetworkHarness)
      })
    }
    // Every scenario again, served by event controllers (open, message, close).
    describe('event controllers', () =>
      eventControllerScenarios(harness, isMemoryTarget(target) ? 'memory' : 'network'))
  })
}
