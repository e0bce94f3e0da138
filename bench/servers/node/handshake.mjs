// Handshake on Node: `serve` from @handshake/node (ws on @hono/node-server).
import { serve } from '@handshake/node'
import { echoApp } from '../echo-app.mjs'
import { announce, stats } from './_util.mjs'

serve({ fetch: echoApp(stats).fetch, port: 0, hostname: '127.0.0.1' }, (info) =>
  announce(info.port),
)
