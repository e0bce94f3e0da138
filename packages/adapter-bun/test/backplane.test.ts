/**
 * Two Bun instances, each in its own process (the `bun` devDependency), on one Redis: the
 * suite's two-instance scenario.
 */
import { backplaneSuite } from '@handshake/conformance'
import { startInstance } from './backplane-start.js'

backplaneSuite({ name: 'bun', start: startInstance() })
