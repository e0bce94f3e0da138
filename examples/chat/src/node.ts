/**
 * The chat on Node: `pnpm start` (or `PORT=8080 pnpm start`). It listens on 127.0.0.1 and, on
 * Ctrl+C or SIGTERM, closes every connection with 1001 Going Away before it exits.
 *
 * With `REDIS_URL` set (`REDIS_URL=redis://127.0.0.1:6379 PORT=3001 pnpm start`), the rooms span
 * every process that shares that Redis, their history included (kept in Redis): run as many as
 * you like, on any ports or machines.
 * @module
 */
import { serve } from '@handshake/node'
import { redisBackplane } from '@handshake/redis'
import { Redis } from 'ioredis'
import { app, useRoomHistory } from './app.ts'

const server = await serve(app, {
  hostname: '127.0.0.1',
  port: Number(process.env.PORT ?? 3000),
  onListen() {}, // the line below says more
})
useRoomHistory(server.topics)
const redisUrl = process.env.REDIS_URL
const redis = redisUrl ? new Redis(redisUrl) : undefined
if (redis) await server.topics.useBackplane(redisBackplane({ client: redis }))
console.log(
  `Chat running at http://127.0.0.1:${server.address.port}/${redis ? ` (rooms shared through ${redisUrl})` : ''}`,
)

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.log(`${signal}: closing every connection with 1001`)
    server
      .shutdown()
      .then(async () => {
        await server.topics.closeBackplane()
        await redis?.quit()
      })
      .then(
        () => process.exit(0),
        (err: unknown) => {
          console.error(err)
          process.exit(1)
        },
      )
  })
}
