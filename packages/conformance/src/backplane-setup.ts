/**
 * What a runtime entry of the two-instance scenario runs before it serves the conformance app:
 * the server's topics on a Redis backplane, through the client the scenario names. It imports
 * no runtime API, so Node, Bun and Deno run it as is.
 * @module
 */
import type { Topics } from '@handshake/core'
import { redisBackplane } from '@handshake/redis'

/** Connects a server's topics to Redis at `url` with an `'ioredis'` or `'node-redis'` client. */
export async function useRedisBackplane(topics: Topics, url: string, kind: string): Promise<void> {
  // Each client is imported only when used, so a Deno instance is granted what that one needs.
  if (kind === 'ioredis') {
    const { Redis } = await import('ioredis')
    const client = new Redis(url)
    client.on('error', (err) => console.error(`ioredis: ${err}`))
    await topics.useBackplane(redisBackplane({ client }))
  } else if (kind === 'node-redis') {
    const { createClient } = await import('redis')
    const client = createClient({ url }).on('error', (err) => console.error(`node-redis: ${err}`))
    await topics.useBackplane(redisBackplane({ client: await client.connect() }))
  } else {
    throw new Error(`Unknown Redis client "${kind}": use ioredis or node-redis`)
  }
}
