import { serve } from '@handshake/node'
import { WebSocket as UndiciWebSocket } from 'undici'
import WebSocket from 'ws'
import type { WebSocketConstructor } from '../src/index.js'
import { createChannelsApp, useFeedHistory } from './app.js'
import { clientSuite } from './suite.js'

clientSuite({
  name: 'node',
  async start() {
    const server = await serve(createChannelsApp(), { port: 0, onListen() {} })
    useFeedHistory(server.topics)
    return {
      url: `http://127.0.0.1:${server.address.port}`,
      stop: () => server.shutdown({ timeout: 1000 }),
    }
  },
  clients: [
    { name: 'ws', WebSocket: WebSocket as unknown as WebSocketConstructor },
    { name: 'undici', WebSocket: UndiciWebSocket as unknown as WebSocketConstructor },
  ],
})
