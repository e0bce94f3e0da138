// Handshake on Workers: importing @handshake/workers installs the adapter.
import '@handshake/workers'
import { echoApp } from '../echo-app.mjs'

export default echoApp(undefined)
