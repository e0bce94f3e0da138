// Handshake on Deno with an event controller: importing @handshake/deno installs the adapter.
import '@handshake/deno'
import { echoEventsApp } from '../echo-events-app.mjs'
import { listen, stats } from './_util.ts'

Deno.serve(listen, echoEventsApp(stats).fetch)
