/**
 * The conformance suite, against the conformance app served by real workerd (Miniflare on a free
 * 127.0.0.1 port), with what workerd cannot do passed as differences.
 */
import { conformanceSuite } from '@handshake/conformance'
import { bundleWorker, startWorker } from './miniflare.js'

conformanceSuite({
  name: 'workers (workerd)',
  // The topic routes run in a Durable Object (see TopicsObject in worker.ts).
  start: async () =>
    startWorker({ script: await bundleWorker(), durableObjects: { TOPICS: 'TopicsObject' } }),
  differences: {
    // workerd's WebSocket has no ping().
    ping: false,
    // workerd cannot tear a TCP connection down: at the timeout the core settles, TCP stays.
    terminateOnTimeout: false,
    // workerd cannot stop reading a WebSocket: a flood faster than serve reads closes with 1008.
    pauseInbound: false,
    upgradeHeaders: true,
    middlewareHeaders: true,
    // workerd reads an unmasked client frame as a message.
    rejectsUnmasked: false,
    // workerd decodes invalid UTF-8 with U+FFFD instead of closing with 1007.
    rejectsInvalidUtf8: false,
    awaitsCloseAnswer: true,
    closeReachesSendingPeer: true,
    // workerd's bufferedAmount reads 0: a slow subscriber is never detected.
    publishBound: false,
  },
})
