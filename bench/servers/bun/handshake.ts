// Handshake on Bun: the `websocket` handlers of @handshake/bun on Bun.serve.
import { websocket } from '@handshake/bun'
import { echoApp } from '../echo-app.mjs'
import { announce, stats } from './_util.ts'

const server = Bun.serve({ hostname: '127.0.0.1', port: 0, fetch: echoApp(stats).fetch, websocket })
announce(server.port)
