// Handshake on Node with an event controller: `serve` from @handshake/node.
import { serve } from '@handshake/node'
import { echoEventsApp } from '../echo-events-app.mjs'
import { announce, stats } from './_util.mjs'

const server = await serve(echoEventsApp(stats), { port: 0, hostname: '127.0.0.1', onListen() {} })
announce(server.address.port)
