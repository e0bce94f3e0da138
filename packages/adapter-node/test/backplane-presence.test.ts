/**
 * Issue 22's presence faults: two Node instances, each in its own process, on one Redis.
 */
import { backplanePresenceSuite } from '@handshake/conformance'
import { startInstance } from './backplane-start.js'

backplanePresenceSuite({ name: 'node', start: startInstance('presence') })
