import WebSocket from 'ws'
import type { WebSocketConstructor } from '../src/index.js'
import { startRuntime } from './runtimes.js'
import { clientSuite } from './suite.js'

clientSuite({
  name: 'deno',
  start: () => startRuntime('deno'),
  clients: [{ name: 'ws', WebSocket: WebSocket as unknown as WebSocketConstructor }],
})
