import WebSocket from 'ws'
import { bundleWorker, startWorker } from '../../adapter-workers/test/miniflare.js'
import type { WebSocketConstructor } from '../src/index.js'
import { clientSuite } from './suite.js'

clientSuite({
  name: 'workerd (a Durable Object)',
  async start() {
    const worker = await startWorker({
      script: await bundleWorker('../../client/test/worker.ts'),
      durableObjects: { CHANNELS: 'ChannelsObject' },
    })
    return { url: worker.url, stop: worker.stop }
  },
  clients: [{ name: 'ws', WebSocket: WebSocket as unknown as WebSocketConstructor }],
})
