/**
 * Issue 20's faults with history on: two Deno instances, each in its own process (the `deno`
 * devDependency), on one Redis, with the narrowest permissions the clients need.
 */
import { backplaneHistorySuite } from '@handshake/conformance'
import { startInstance } from './backplane-start.js'

backplaneHistorySuite({ name: 'deno', start: startInstance('history') })
