/**
 * Redis Cluster: a cluster client is refused with an error that says what to pass instead, and
 * what it says works: a client of one node, on a real cluster of three redis-server processes.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster } from 'ioredis'
import { createCluster } from 'redis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort, rawCommand } from '../../conformance/src/redis-server.js'
import { redisBackplane } from '../src/index.js'
import { CLIENT_KINDS, joinRoom, startInstance, until } from './fixtures.js'

interface TestCluster {
  readonly ports: number[]
  stop(): Promise<void>
}

/** Three masters, no replicas, every slot assigned: `redis-cli --cluster create`. */
async function startCluster(): Promise<TestCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'handshake-cluster-'))
  const ports = [await freePort(), await freePort(), await freePort()]
  const servers: ChildProcess[] = ports.map((port) =>
    spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        `nodes-${port}.conf`,
        '--dir',
        dir,
      ],
      { stdio: 'ignore' },
    ),
  )
  const stop = async () => {
    await Promise.all(
      servers.map(async (server) => {
        if (server.exitCode !== null || server.signalCode !== null) return
        const exited = once(server, 'exit')
        server.kill('SIGKILL')
        await exited
      }),
    )
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    for (const port of ports) {
      await until(
        () =>
          rawCommand(port, ['PING'], 1000).then(
            (answer) => answer === 'PONG',
            () => false,
          ),
        10_000,
        `redis-server on ${port}`,
      )
    }
    const create = spawn(
      'redis-cli',
      ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-yes'],
      { stdio: 'ignore' },
    )
    const [code] = await once(create, 'exit')
    if (code !== 0) throw new Error(`redis-cli --cluster create exited with ${code}`)
    await until(
      async () => {
        const info = await rawCommand(ports[0]!, ['CLUSTER', 'INFO'])
        return String(info).includes('cluster_state:ok')
      },
      10_000,
      'cluster_state:ok',
    )
  } catch (err) {
    await stop()
    throw err
  }
  return { ports, stop }
}

let cluster: TestCluster
beforeAll(async () => {
  cluster = await startCluster()
})
afterAll(async () => {
  await cluster?.stop()
})

describe('Redis Cluster', () => {
  it('an ioredis Cluster is refused with an error that says what to pass', async () => {
    const client = new Cluster([{ host: '127.0.0.1', port: cluster.ports[0]! }])
    client.on('error', () => {})
    try {
      await until(() => client.status === 'ready', 10_000, 'the cluster client')
      expect(() => redisBackplane({ client: client as never })).toThrow(
        /does not take a Redis Cluster client.*client of one node/,
      )
    } finally {
      client.disconnect()
    }
  })

  it('a node-redis cluster is refused with an error that says what to pass', async () => {
    const client = createCluster({ rootNodes: [{ url: `redis://127.0.0.1:${cluster.ports[0]}` }] })
    client.on('error', () => {})
    await client.connect()
    try {
      expect(() => redisBackplane({ client: client as never })).toThrow(
        /does not take a Redis Cluster client.*client of one node/,
      )
    } finally {
      client.destroy()
    }
  })

  it.each(CLIENT_KINDS)(
    'what the error advises works, with %s: a client of one node each, across nodes',
    async (kind) => {
      const a = await startInstance(kind, `redis://127.0.0.1:${cluster.ports[0]}`)
      const b = await startInstance(kind, `redis://127.0.0.1:${cluster.ports[2]}`)
      try {
        const onB = await joinRoom(b, `cluster-${kind}`)
        a.topics.publish(`cluster-${kind}`, 'across the cluster')
        expect(await onB.receive(1)).toEqual(['across the cluster'])
        expect(a.errors).toEqual([])
        expect(b.errors).toEqual([])
      } finally {
        await Promise.all([a.stop(), b.stop()])
      }
    },
  )
})
