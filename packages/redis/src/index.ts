/**
 * Handshake topics across instances on Redis pub/sub, with the client the app already has
 * (ioredis or node-redis), on Node, Bun and Deno.
 *
 * ```ts
 * import { serve } from '@handshake/node'
 * import { redisBackplane } from '@handshake/redis'
 * import { Redis } from 'ioredis'
 *
 * const server = await serve(app, { port: 3000 })
 * await server.topics.useBackplane(redisBackplane({ client: new Redis(process.env.REDIS_URL) }))
 * ```
 * @module
 */
export {
  DEFAULT_PREFIX,
  RedisBackplane,
  type RedisBackplaneOptions,
  redisBackplane,
} from './backplane.js'
export type {
  IORedisClient,
  NodeRedisClient,
  NodeRedisListener,
  RedisClient,
} from './clients.js'
