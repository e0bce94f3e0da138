/**
 * The conformance suite, against the conformance app served by real workerd (Miniflare on a free
 * 127.0.0.1 port) from a Durable Object (`test/conformance-object.ts`): where a Worker's connections can see
 * each other (topics) and be closed together (shutdown). What workerd cannot do is passed as
 * differences. The plain Worker's own behaviour is tested in `workers.test.ts`.
 */
import { conformanceSuite, errorFromChild } from '@handshake/conformance'
import { bundleWorker, startWorker } from './miniflare.js'

conformanceSuite({
  name: 'workers (workerd, Durable Object)',
  async start() {
    const worker = await startWorker({
      script: await bundleWorker('./conformance-object.ts'),
      durableObjects: { CONFORMANCE: 'ConformanceObject' },
    })
    return {
      ...worker,
      sibling: `${worker.url}/sibling`,
      async shutdown(options = {}) {
        const response = await fetch(`${worker.url}/control/shutdown`, {
          method: 'POST',
          body: JSON.stringify(options),
        })
        const { error } = (await response.json()) as { error?: { name: string; message: string } }
        if (error) throw errorFromChild(error)
      },
    }
  },
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
    // A Durable Object cannot stop listening: new upgrades get the core's 503 until the end.
    listensDuringShutdown: true,
    // workerd reads a whole message (up to 32 MiB) before the core can check maxMessageSize.
    refusesOversizedEarly: false,
    // workerd's bufferedAmount reads 0: a slow subscriber is never detected.
    publishBound: false,
  },
})
