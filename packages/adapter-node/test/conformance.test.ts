/**
 * The conformance suite on Node, against real sockets: a `ws` client, undici's WebSocket and the
 * suite's raw TCP peer. It runs in its own file, so that the memory measurements of
 * `node.test.ts` see only their own traffic.
 */
// The suite is a private workspace package that this package does not depend on yet: it is
// imported from its source (see the package README's "Tests").
import { conformanceSuite, createConformanceApp, findReport } from '@handshake/conformance'
import { serve } from '../src/index.js'

conformanceSuite({
  name: 'node',
  async start() {
    const app = createConformanceApp()
    const listen = { port: 0, hostname: '127.0.0.1', onListen() {} }
    const running = await serve(app, listen)
    // The same app on a second server of this process: a second hub.
    const sibling = await serve(app, listen)
    return {
      url: `http://127.0.0.1:${running.address.port}`,
      sibling: `http://127.0.0.1:${sibling.address.port}`,
      stop: async () => {
        await Promise.all([
          running.shutdown({ timeout: 5000 }),
          sibling.shutdown({ timeout: 5000 }),
        ])
      },
      shutdown: (options) => running.shutdown(options),
      // In this process: readable after the server stopped listening.
      report: async (id) => findReport(id),
    }
  },
  // ws can ping, terminate and pause: Node does everything the core asks.
  differences: {
    ping: true,
    terminateOnTimeout: true,
    awaitsCloseAnswer: true,
    pauseInbound: true,
    upgradeHeaders: true,
    middlewareHeaders: true,
    rejectsUnmasked: true,
    rejectsInvalidUtf8: true,
    closeReachesSendingPeer: true,
    // server.close() stops listening first: a new connection is refused.
    listensDuringShutdown: false,
    refusesOversizedEarly: true,
    publishBound: true,
  },
})
