import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { expect, it } from 'vitest'

// The core runs on every runtime: it may use web standards only.
const forbidden = [
  /from\s+['"]node:/,
  /from\s+['"](fs|net|http|https|crypto|stream|events|buffer|ws|bun|@hono\/node-server)['"]/,
  /\bBun\./,
  /\bDeno\./,
  /\bWebSocketPair\b/,
  /\bprocess\.[a-z]/,
  /\bBuffer\./,
]

it('the core imports no runtime API', () => {
  const dir = join(import.meta.dirname, '../src')
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts'))
  expect(files.length).toBeGreaterThan(5)
  for (const file of files) {
    const source = readFileSync(join(dir, file), 'utf8')
    for (const pattern of forbidden)
      expect(source, `${file} matches ${pattern}`).not.toMatch(pattern)
  }
})
