// Fan-out on Handshake, Deno.
import '@handshake/deno'
import { fanoutApp } from '../fanout-app.mjs'
import { listen, stats } from './_util.ts'

Deno.serve(listen, fanoutApp(stats).fetch)
