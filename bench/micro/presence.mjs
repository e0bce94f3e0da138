/**
 * What presence costs (issue 22), on Node, in one process:
 *
 * 1. Memory per member: 10,000 connections of the test kit (no sockets) subscribe to a topic;
 *    a heap snapshot is taken; then each joins the topic's presence (`conn.subscribe(topic,
 *    { presence: { name } })` again, with a 10-character name), and a second snapshot is taken.
 *    The difference, per member, is printed by what the objects are (constructor, or the
 *    properties of a plain object), with the heap's total.
 * 2. The time for a join to reach 1,000 subscribers: a `Channels` topic with a presence hook,
 *    served by `@handshake/node`, has 1,000 members (`ws` clients over loopback); one more client
 *    subscribes, and the time from its subscribe frame to the last of the 1,000 presence diffs
 *    received is measured; then it unsubscribes, and the leave is measured the same way. 30
 *    rounds; the median and the 90th percentile. Client and server share the process (and the
 *    machine's cores), so the figure includes the clients' own receiving; the server's own
 *    share (from the event's dispatch to the last socket's send) is printed apart.
 *
 *   pnpm build && node --expose-gc bench/micro/presence.mjs
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import process from 'node:process'
import { writeHeapSnapshot } from 'node:v8'
import { upgrade } from '@handshake/core'
import { createHub } from '@handshake/core/adapter'
import { CHANNEL_PROTOCOL, Channels } from '@handshake/core/channels'
import { connect } from '@handshake/core/testing'
import { serve } from '@handshake/node'
import { Hono } from 'hono'
import WebSocket from 'ws'
import { diffSummaries, summarizeSnapshot } from '../lib/heapsnapshot.mjs'

if (typeof globalThis.gc !== 'function') {
  console.error('Run with node --expose-gc bench/micro/presence.mjs')
  process.exit(1)
}

const MEMBERS = 10_000
const SUBSCRIBERS = 1000
const ROUNDS = 30

const settle = async () => {
  for (let i = 0; i < 3; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    globalThis.gc()
  }
}

async function memoryPerMember() {
  const hub = createHub()
  const app = new Hono().get(
    '/',
    upgrade({
      open: (conn) => conn.subscribe('room'),
      message() {},
    }),
  )
  const peers = []
  for (let i = 0; i < MEMBERS; i++) peers.push(await connect(app, '/', { hub }))
  // The topic's view exists before the first snapshot: what follows is per member.
  await hub.topics.presence('room')
  const dir = mkdtempSync(join(tmpdir(), 'presence-heap-'))
  try {
    await settle()
    const beforePath = writeHeapSnapshot(join(dir, 'before.heapsnapshot'))
    const conns = [...hub.connections]
    for (let i = 0; i < conns.length; i++) {
      await conns[i].subscribe('room', { presence: { name: `user-${String(i).padStart(5, '0')}` } })
    }
    await settle()
    const afterPath = writeHeapSnapshot(join(dir, 'after.heapsnapshot'))
    // Both taken before either is read: the summaries are not in the snapshots.
    const before = summarizeSnapshot(beforePath)
    const after = summarizeSnapshot(afterPath, before.ids)
    const listed = (await hub.topics.presence('room')).length
    const diff = diffSummaries(before, after, MEMBERS)
    console.log(`Memory per member (${listed} members of one topic, heap snapshot diff):`)
    console.log(`  total: ${diff.bytes.toFixed(0)} bytes per member`)
    const rows = [...diff.groups]
      .filter(([, g]) => Math.abs(g.bytes) >= 4)
      .sort((a, b) => b[1].bytes - a[1].bytes)
      .slice(0, 12)
    for (const [label, g] of rows) {
      console.log(
        `  ${g.bytes.toFixed(0).padStart(5)} B  ${g.count.toFixed(2).padStart(5)} x  ${label}`,
      )
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
    for (const peer of peers) peer.close(1000)
  }
}

async function fanOut() {
  const channels = new Channels({
    open(conn, c) {
      conn.data = { name: c.req.query('name') ?? 'anonymous' }
    },
  }).topic('room', {
    message: { '~standard': { version: 1, vendor: 'bench', validate: (value) => ({ value }) } },
    presence: ({ conn }) => ({ name: conn.data.name }),
  })
  const app = new Hono().get('/ws', upgrade(channels, { subprotocols: [CHANNEL_PROTOCOL] }))
  const server = await serve(app, { port: 0, onListen() {} })
  // The server's own share: from the event's dispatch (this listener runs first) to the last
  // socket's send (a listener added after the channels' one, which sends the diffs, runs last).
  let dispatched = 0
  const serverShare = []
  server.topics.addEventListener('presence', () => {
    dispatched = performance.now()
  })
  const base = `ws://127.0.0.1:${server.address.port}/ws`
  const open = (name) =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(`${base}?name=${name}`, CHANNEL_PROTOCOL)
      ws.once('open', () => resolve(ws))
      ws.once('error', reject)
    })
  const subscribed = (ws) =>
    new Promise((resolve) => {
      const listen = (data) => {
        if (String(data).startsWith('{"type":"presence","topic":"room","members"')) {
          ws.off('message', listen)
          resolve()
        }
      }
      ws.on('message', listen)
      ws.send('{"type":"subscribe","id":1,"topic":"room"}')
    })
  const members = []
  for (let i = 0; i < SUBSCRIBERS; i++) {
    const ws = await open(`member-${i}`)
    await subscribed(ws)
    members.push(ws)
  }
  // Each member counts the diffs that name the round's joiner.
  let marker = ''
  let arrived = 0
  let done = () => {}
  for (const ws of members) {
    ws.on('message', (data) => {
      const text = String(data)
      if (marker && text.includes(marker)) {
        arrived++
        if (arrived === SUBSCRIBERS) done()
      }
    })
  }
  server.topics.addEventListener('presence', () => {
    serverShare.push(performance.now() - dispatched)
  })
  const joiner = await open('joiner')
  const measure = (frame, kind) =>
    new Promise((resolve) => {
      arrived = 0
      marker = kind
      const started = performance.now()
      done = () => resolve(performance.now() - started)
      joiner.send(frame)
    })
  const joins = []
  const leaves = []
  for (let round = 0; round < ROUNDS; round++) {
    joins.push(
      await measure(`{"type":"subscribe","id":${round * 2 + 1},"topic":"room"}`, '"joins":[{"id"'),
    )
    leaves.push(
      await measure(
        `{"type":"unsubscribe","id":${round * 2 + 2},"topic":"room"}`,
        '"leaves":[{"id"',
      ),
    )
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  const stat = (values) => {
    const sorted = [...values].sort((a, b) => a - b)
    const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
    return `median ${at(0.5).toFixed(2)} ms, p90 ${at(0.9).toFixed(2)} ms`
  }
  console.log(`A join reaching ${SUBSCRIBERS} subscribers (${ROUNDS} rounds): ${stat(joins)}`)
  console.log(`A leave reaching ${SUBSCRIBERS} subscribers (${ROUNDS} rounds): ${stat(leaves)}`)
  console.log(
    `  of which the server's sending of one diff to ${SUBSCRIBERS} sockets: ${stat(serverShare)}`,
  )
  joiner.close()
  for (const ws of members) ws.close()
  await server.shutdown({ timeout: 1000 })
}

await memoryPerMember()
await fanOut()
process.exit(0)
