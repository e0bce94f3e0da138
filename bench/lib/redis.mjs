/**
 * A redis-server of the bench's own: what the fan-out workload's history row and the Redis micro
 * benches (`micro/redis-history.mjs`, `micro/redis-presence.mjs`) start and stop.
 * @module
 */
import { spawn } from 'node:child_process'
import { connect, createServer } from 'node:net'
import { sleep, stopServer } from './proc.mjs'

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

/**
 * Starts a redis-server on a free port of 127.0.0.1, with no persistence, and resolves once it
 * accepts connections (within 5 s): its port, PID and URL, and `stop()` (SIGTERM, then SIGKILL).
 */
export async function startRedis() {
  const port = await freePort()
  const proc = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  )
  const failed = new Promise((_, reject) => proc.once('error', reject))
  const listening = () =>
    new Promise((resolve) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.destroy()
        resolve(true)
      })
      socket.once('error', () => resolve(false))
    })
  for (let i = 0; i < 100; i++) {
    if (await Promise.race([listening(), failed])) {
      return {
        port,
        pid: proc.pid,
        url: `redis://127.0.0.1:${port}`,
        stop: () => stopServer({ proc }),
      }
    }
    await sleep(50)
  }
  proc.kill('SIGKILL')
  throw new Error('redis-server did not start within 5 s')
}
