// Handshake on Deno: importing @handshake/deno installs the adapter; Deno.serve runs the app.
import '@handshake/deno'
import { echoApp } from '../echo-app.mjs'
import { listen, stats } from './_util.ts'

Deno.serve(listen, echoApp(stats).fetch)
