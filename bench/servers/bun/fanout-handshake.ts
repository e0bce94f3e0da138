// Fan-out on Handshake, Bun: topics through Bun's own tree (`ws.subscribe`, `server.publish`).
import { websocket } from '@handshake/bun'
import { fanoutApp } from '../fanout-app.mjs'
import { announce, stats } from './_util.ts'

const server = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  fetch: fanoutApp(stats).fetch,
  websocket,
})
announce(server.port)
