/**
 * Two Deno instances, each in its own process (the `deno` devDependency), on one Redis: the
 * suite's two-instance scenario, with the narrowest permissions the clients need.
 */
import { backplaneSuite } from '@handshake/conformance'
import { startInstance } from './backplane-start.js'

backplaneSuite({ name: 'deno', start: startInstance() })
