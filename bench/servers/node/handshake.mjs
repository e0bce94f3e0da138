// Handshake on Node: `serve` from @handshake/node (ws on @hono/node-server).
import { serve } from '@handshake/node'
import { echoApp } from '../echo-app.mjs'
import { announce, stats } from './_util.mjs'

const server = await serve(echoApp(stats), { port: 0, hostname: '127.0.0.1', onListen() {} })
announce(server.address.port)
