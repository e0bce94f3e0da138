/**
 * Issue 20's faults with history on: two Bun instances, each in its own process (the `bun`
 * devDependency), on one Redis.
 */
import { backplaneHistorySuite } from '@handshake/conformance'
import { startInstance } from './backplane-start.js'

backplaneHistorySuite({ name: 'bun', start: startInstance('history') })
