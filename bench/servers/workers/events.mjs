// Handshake on Workers with an event controller, in a plain Worker (accept(), no hibernation).
import '@handshake/workers'
import { echoEventsApp } from '../echo-events-app.mjs'

export default echoEventsApp(undefined)
