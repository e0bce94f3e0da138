// Handshake on Bun with an event controller: the `websocket` handlers of @handshake/bun.
import { websocket } from '@handshake/bun'
import { echoEventsApp } from '../echo-events-app.mjs'
import { announce, stats } from './_util.ts'

const server = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  fetch: echoEventsApp(stats).fetch,
  websocket,
})
announce(server.port)
