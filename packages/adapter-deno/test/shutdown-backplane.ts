/**
 * The suite's failing-backplane shutdown in Deno, through this package's `serve`: prints its
 * report as JSON, then ends by itself.
 */
// Relative imports, as in server.ts: Deno runs the suite's TypeScript from its source.
import { failingBackplaneShutdown } from '../../conformance/src/shutdown-backplane.ts'
import { serve } from '../src/index.ts'

console.log(JSON.stringify(await failingBackplaneShutdown(serve)))
