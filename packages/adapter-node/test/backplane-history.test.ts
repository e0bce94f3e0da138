/**
 * Issue 20's faults with history on: two Node instances, each in its own process, on one Redis.
 */
import { backplaneHistorySuite } from '@handshake/conformance'
import { startInstance } from './backplane-start.js'

backplaneHistorySuite({ name: 'node', start: startInstance('history') })
