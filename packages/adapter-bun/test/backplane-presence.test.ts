/**
 * Issue 22's presence faults: two Bun instances, each in its own process (the `bun`
 * devDependency), on one Redis.
 */
import { backplanePresenceSuite } from '@handshake/conformance'
import { startInstance } from './backplane-start.js'

backplanePresenceSuite({ name: 'bun', start: startInstance('presence') })
