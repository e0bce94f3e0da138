/**
 * Issue 22's presence faults: two Deno instances, each in its own process (the `deno`
 * devDependency), on one Redis, with the narrowest permissions the clients need.
 */
import { backplanePresenceSuite } from '@handshake/conformance'
import { startInstance } from './backplane-start.js'

backplanePresenceSuite({ name: 'deno', start: startInstance('presence') })
