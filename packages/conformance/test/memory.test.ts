import { conformanceSuite, memoryTarget } from '../src/index.js'

conformanceSuite(memoryTarget)
