/**
 * The suite's failing-backplane shutdown in Bun, through this package's `serve`: prints its
 * report as JSON, then ends by itself.
 */
import { failingBackplaneShutdown } from '@handshake/conformance/shutdown-backplane'
import { serve } from '../src/index.js'

console.log(JSON.stringify(await failingBackplaneShutdown(serve)))
