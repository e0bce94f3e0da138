import { WebSocket as UndiciWebSocket } from 'undici'
import WebSocket from 'ws'
import type { WebSocketConstructor } from '../src/index.js'
import { startRuntime } from './runtimes.js'
import { clientSuite } from './suite.js'

clientSuite({
  name: 'node',
  start: () => startRuntime('node'),
  clients: [
    { name: 'ws', WebSocket: WebSocket as unknown as WebSocketConstructor },
    { name: 'undici', WebSocket: UndiciWebSocket as unknown as WebSocketConstructor },
  ],
})
