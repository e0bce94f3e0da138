/**
 * Two Node instances, each in its own process, on one Redis: the suite's two-instance scenario.
 */
import { backplaneSuite } from '@handshake/conformance'
import { startInstance } from './backplane-start.js'

backplaneSuite({ name: 'node', start: startInstance() })
