import WebSocket from 'ws'
import type { WebSocketConstructor } from '../src/index.js'
import { startRuntime } from './runtimes.js'
import { clientSuite } from './suite.js'

clientSuite({
  name: 'bun',
  start: () => startRuntime('bun'),
  clients: [{ name: 'ws', WebSocket: WebSocket as unknown as WebSocketConstructor }],
})
