/**
 * The Bun adapter, tested in the real Bun: each `start()` runs `test/server.ts` in a Bun child
 * process (the `bun` devDependency, never a global one) and talks to it over 127.0.0.1.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import http from 'node:http'
import { createRequire } from 'node:module'
import net from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { ChildControl, conformanceSuite } from '@handshake/conformance'
import { expectedBackplaneCloseReport } from '@handshake/conformance/shutdown-backplane'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { SendOutcome } from './bun-app.js'

// --- the Bun child ---

const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..')
const serverEntry = join(packageDir, 'test', 'server.ts')

/** The binary of the `bun` devDependency, found the way Node resolves any package. */
function bunBinary(): string {
  const require = createRequire(join(packageDir, 'package.json'))
  const manifestPath = require.resolve('bun/package.json')
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as { bin: { bun: string } }
  return join(dirname(manifestPath), manifest.bin.bun)
}

interface BunServer {
  readonly child: ChildProcess
  readonly port: number
  readonly http: string
  /** The same app on a second server of the same form, in the same process: a second hub. */
  readonly sibling: string | undefined
  readonly ws: string
  /** Everything the child wrote, for assertions and for failure messages. */
  output(): string
  stop(): Promise<void>
  /** The suite's commands to the child, on its stdin: its shutdown, its reports. */
  readonly control: ChildControl
}

const children = new Set<ChildProcess>()

/** Starts `test/server.ts` in Bun with the given entry mode and waits for its port. */
async function startBun(mode = 'entry'): Promise<BunServer> {
  const child = spawn(bunBinary(), [serverEntry, mode], {
    cwd: packageDir,
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  children.add(child)
  let output = ''
  const control = new ChildControl((line) => child.stdin?.write(line))
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (output.slice(output.lastIndexOf('\n') + 1) + chunk).split('\n')
    for (const line of lines.slice(0, -1)) control.receive(line)
    output += chunk
  })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk
  })
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`Bun did not start:\n${output}`)), 20_000)
    const poll = setInterval(() => {
      const match = /PORT (\d+)/.exec(output)
      if (!match) return
      clearTimeout(timer)
      clearInterval(poll)
      resolve(Number(match[1]))
    }, 20)
    child.once('exit', (code) => {
      clearTimeout(timer)
      clearInterval(poll)
      reject(new Error(`Bun exited with ${code} before listening:\n${output}`))
    })
  })
  const sibling = /SIBLING (\d+)/.exec(output)?.[1]
  return {
    child,
    port,
    http: `http://127.0.0.1:${port}`,
    sibling: sibling && `http://127.0.0.1:${sibling}`,
    ws: `ws://127.0.0.1:${port}`,
    output: () => output,
    stop: () => stopChild(child),
    control,
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  children.delete(child)
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGKILL')
  await exited
}

afterAll(async () => {
  await Promise.all([...children].map(stopChild))
})

// --- clients ---

let nextId = 0
const uniqueId = (label: string) => `bun-${label}-${process.pid}-${nextId++}`

interface Client {
  readonly socket: WebSocket
  readonly upgradeHeaders: Record<string, string | string[] | undefined>
  readonly messages: (string | Uint8Array)[]
  readonly closed: Promise<{ code: number; reason: string }>
  next(): Promise<string | Uint8Array>
}

function connect(url: string, protocols?: string[]): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, protocols)
    const messages: (string | Uint8Array)[] = []
    const waiters: ((message: string | Uint8Array) => void)[] = []
    let upgradeHeaders: Client['upgradeHeaders'] = {}
    socket.on('upgrade', (response) => {
      upgradeHeaders = response.headers
    })
    socket.on('message', (data: Buffer, isBinary) => {
      const message = isBinary ? new Uint8Array(data) : data.toString('utf8')
      const waiter = waiters.shift()
      if (waiter) waiter(message)
      else messages.push(message)
    })
    const closed = new Promise<{ code: number; reason: string }>((settle) => {
      socket.on('close', (code, reason) => settle({ code, reason: reason.toString('utf8') }))
    })
    socket.on('error', reject)
    socket.on('unexpected-response', (_request, response) => {
      reject(new Error(`Unexpected response ${response.statusCode}`))
      response.resume()
    })
    socket.on('open', () =>
      resolve({
        socket,
        upgradeHeaders,
        messages,
        closed,
        next: () => {
          const queued = messages.shift()
          if (queued !== undefined) return Promise.resolve(queued)
          return new Promise((settle) => waiters.push(settle))
        },
      }),
    )
  })
}

const UPGRADE_REQUEST_HEADERS = {
  Connection: 'Upgrade',
  Upgrade: 'websocket',
  'Sec-WebSocket-Version': '13',
  'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
}

/** An upgrade request that the server must refuse: its status and body. */
async function refusedUpgrade(url: string): Promise<{ status: number; body: string }> {
  const request = http.get(url, { headers: UPGRADE_REQUEST_HEADERS })
  request.on('upgrade', (_response, socket) => {
    socket.destroy()
    request.destroy(new Error('The server upgraded a request it had to refuse'))
  })
  const [response] = (await once(request, 'response')) as [http.IncomingMessage]
  let body = ''
  for await (const chunk of response.setEncoding('utf8')) body += chunk
  return { status: response.statusCode ?? 0, body }
}

/** A raw TCP peer: writes a handshake by hand, then lets the test write any bytes. */
async function rawPeer(
  port: number,
  path: string,
  extraHeaders: Record<string, string> = {},
): Promise<{ head: string; socket: net.Socket; received: () => Buffer; ended: Promise<void> }> {
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  const lines = Object.entries({
    Host: `127.0.0.1:${port}`,
    ...UPGRADE_REQUEST_HEADERS,
    ...extraHeaders,
  })
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('')
  socket.write(`GET ${path} HTTP/1.1\r\n${lines}\r\n`)
  // Chunks are joined only when read: a flood of small chunks would make joining each one slow.
  let chunks: Buffer[] = []
  const joined = () => {
    if (chunks.length > 1) chunks = [Buffer.concat(chunks)]
    return chunks[0] ?? Buffer.alloc(0)
  }
  const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  socket.on('error', () => {})
  const deadline = Date.now() + 10_000
  while (!joined().includes('\r\n\r\n')) {
    if (Date.now() > deadline) throw new Error('No upgrade response')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  const start = joined().indexOf('\r\n\r\n') + 4
  const head = joined().subarray(0, start).toString('latin1')
  return { head, socket, received: () => joined().subarray(start), ended }
}

/** A masked client frame. */
function clientFrame(opcode: number, payload: Uint8Array): Buffer {
  const length = payload.byteLength
  const extra = length < 126 ? 0 : length < 0x10000 ? 2 : 8
  const frame = Buffer.alloc(2 + extra + 4 + length)
  frame[0] = 0x80 | opcode
  if (extra === 0) frame[1] = 0x80 | length
  else if (extra === 2) {
    frame[1] = 0x80 | 126
    frame.writeUInt16BE(length, 2)
  } else {
    frame[1] = 0x80 | 127
    frame.writeBigUInt64BE(BigInt(length), 2)
  }
  // An all-zero mask key keeps the payload as is.
  Buffer.from(payload).copy(frame, 2 + extra + 4)
  return frame
}

/** The opcode and payload length of every whole frame in the server's bytes (unmasked). */
function framesIn(bytes: Buffer): { opcode: number; length: number; payload: Buffer }[] {
  const frames = []
  let offset = 0
  while (offset + 2 <= bytes.length) {
    let length = (bytes[offset + 1] as number) & 0x7f
    let header = 2
    if (length === 126) {
      if (offset + 4 > bytes.length) break
      length = bytes.readUInt16BE(offset + 2)
      header = 4
    } else if (length === 127) {
      if (offset + 10 > bytes.length) break
      length = Number(bytes.readBigUInt64BE(offset + 2))
      header = 10
    }
    if (offset + header + length > bytes.length) break
    const opcode = (bytes[offset] as number) & 0x0f
    frames.push({
      opcode,
      length,
      payload: bytes.subarray(offset + header, offset + header + length),
    })
    offset += header + length
  }
  return frames
}

/** The code and reason of the first close frame in the server's bytes. */
function closeFrameIn(bytes: Buffer): { code: number; reason: string } | undefined {
  const frame = framesIn(bytes).find(({ opcode }) => opcode === 0x8)
  if (!frame) return undefined
  return frame.payload.length < 2
    ? { code: 1005, reason: '' }
    : { code: frame.payload.readUInt16BE(0), reason: frame.payload.subarray(2).toString('utf8') }
}

async function eventually<T>(probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error('Timed out waiting for a condition')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

interface Report {
  logged: string[][]
  readError?: { name: string; code?: number; reason?: string; wasClean?: boolean }
  settled: boolean
}

async function report(server: BunServer, id: string): Promise<Report | undefined> {
  const response = await fetch(`${server.http}/report/${id}`)
  return response.ok ? ((await response.json()) as Report) : undefined
}

// --- the conformance suite ---

/**
 * What Bun cannot do the way Node does. A variable, not a literal, so that a flag the suite does
 * not know yet is passed on without a type error.
 */
const differences = {
  ping: true,
  terminateOnTimeout: true,
  // Bun has ws.pause()/ws.resume(): a flood is held by pausing, not closed with 1008.
  pauseInbound: true,
  upgradeHeaders: true,
  // Bun writes the 101 inside server.upgrade(), before middleware after `next()` resumes.
  middlewareHeaders: false,
  rejectsUnmasked: true,
  rejectsInvalidUtf8: true,
  closeReachesSendingPeer: true,
  publishBound: true,
  // Bun ends the connection as soon as its own close frame is written (FIN at once, the close
  // handler at once): close() never waits for the peer's answer.
  awaitsCloseAnswer: false,
  // server.stop() stops listening first: a new connection is refused.
  listensDuringShutdown: false,
  // Bun's maxPayloadLength (the server's largest maxMessageSize) is checked on the header.
  refusesOversizedEarly: true,
}

conformanceSuite({
  name: 'bun',
  // serve(app): the helper that gives each server its own registry and its shutdown.
  start: async () => {
    const server = await startBun('serve')
    return {
      url: server.http,
      sibling: server.sibling as string,
      stop: server.stop,
      shutdown: (options) => server.control.shutdown(options),
      report: (id) => server.control.report(id),
    }
  },
  differences,
})

// --- Bun-specific behaviour ---

describe('Bun adapter: the documented entry', () => {
  let server: BunServer
  beforeAll(async () => {
    server = await startBun('entry')
  })
  afterAll(() => server.stop())

  it('hands each binary message over as exactly its bytes, in its own buffer', async () => {
    const client = await connect(`${server.ws}/binary-shape?id=${uniqueId('shape')}`)
    // Several messages in one TCP write: a runtime that slices one read buffer would show it.
    const sizes = [1, 3, 1000, 70_000]
    client.socket.send(Buffer.concat([]), { binary: true })
    for (const size of sizes) client.socket.send(new Uint8Array(size).fill(7), { binary: true })
    const shapes = []
    for (let i = 0; i <= sizes.length; i++) shapes.push(JSON.parse(String(await client.next())))
    expect(shapes).toEqual(
      [0, ...sizes].map((size) => ({ byteLength: size, byteOffset: 0, bufferByteLength: size })),
    )
    client.socket.close()
    await client.closed
  })

  it('sends exactly the bytes of a view, not its whole buffer', async () => {
    const client = await connect(`${server.ws}/echo-view?id=${uniqueId('view')}`)
    const payload = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff)
    client.socket.send(payload)
    expect(await client.next()).toEqual(payload)
    client.socket.close()
    await client.closed
  })

  it('puts no Sec-WebSocket-Protocol on the 101 when no subprotocol matches (oven-sh/bun#18243)', async () => {
    const offered = await rawPeer(server.port, `/subprotocols?id=${uniqueId('proto-none')}`, {
      'Sec-WebSocket-Protocol': 'nope.v1, nope.v2',
    })
    expect(offered.head).toMatch(/^HTTP\/1\.1 101/)
    expect(offered.head.toLowerCase()).not.toContain('sec-websocket-protocol')
    offered.socket.destroy()
    const chosen = await rawPeer(server.port, `/subprotocols?id=${uniqueId('proto-one')}`, {
      'Sec-WebSocket-Protocol': 'v1.chat, v2.chat',
    })
    expect(chosen.head).toMatch(/\r\nsec-websocket-protocol: v2\.chat\r\n/i)
    chosen.socket.destroy()
  })

  it('maps the protocol faults Bun reports as 1006 to their codes', async () => {
    const cases = [
      { name: 'invalid UTF-8', frame: clientFrame(0x1, Uint8Array.of(0xff, 0xfe)), code: 1007 },
      { name: 'a bad opcode', frame: clientFrame(0x3, new Uint8Array(0)), code: 1002 },
      { name: 'an unmasked frame', frame: Buffer.from([0x81, 0x02, 0x68, 0x69]), code: 1002 },
    ]
    for (const { name, frame, code } of cases) {
      const id = uniqueId('fault')
      const peer = await rawPeer(server.port, `/echo?id=${id}`)
      peer.socket.write(frame)
      await peer.ended
      expect(closeFrameIn(peer.received())?.code, name).toBe(code)
      const seen = await eventually(async () => {
        const record = await report(server, id)
        return record?.readError ? record : undefined
      })
      expect(seen.readError, name).toMatchObject({ name: 'CloseError', code, wasClean: false })
    }
  })

  it("refuses a message over Bun's maxPayloadLength (1 MiB by default) with 1009", async () => {
    const id = uniqueId('too-big')
    const client = await connect(`${server.ws}/echo?id=${id}`)
    client.socket.on('error', () => {})
    client.socket.send(new Uint8Array(1024 * 1024 + 1))
    expect((await client.closed).code).toBe(1009)
    const seen = await eventually(async () => (await report(server, id))?.readError)
    expect(seen).toMatchObject({ code: 1009, wasClean: false })
  })

  it('waits for Bun to drain instead of letting it drop messages (send returns -1, then drain)', async () => {
    // 400 × 64 KiB is 25 MiB, over the default 5 MiB backpressureLimit: sends that did not wait
    // for the drain handler would make Bun drop messages.
    const id = uniqueId('flood')
    const count = 400
    const size = 64 * 1024
    const peer = await rawPeer(server.port, `/bun/flood?id=${id}&n=${count}&size=${size}`)
    peer.socket.pause()
    const stalled = await eventually(async () => {
      const response = await fetch(`${server.http}/bun/flood-stats/${id}`)
      const record = response.ok ? ((await response.json()) as { sent: number }) : undefined
      return record && record.sent > 0 ? record : undefined
    })
    await new Promise((resolve) => setTimeout(resolve, 500))
    const held = (await (await fetch(`${server.http}/bun/flood-stats/${id}`)).json()) as {
      sent: number
      maxBufferedAmount: number
      error?: string
    }
    expect(stalled.sent).toBeGreaterThan(0)
    expect(held.sent).toBeLessThan(count)
    expect(held.error).toBeUndefined()
    peer.socket.resume()
    const frames = await eventually(() => {
      const all = framesIn(peer.received())
      return all.at(-1)?.opcode === 0x1 ? all : undefined
    })
    expect(frames.length).toBe(count + 1)
    expect(frames.slice(0, count).every((frame) => frame.length === size)).toBe(true)
    const done = (await (await fetch(`${server.http}/bun/flood-stats/${id}`)).json()) as {
      sent: number
      maxBufferedAmount: number
    }
    expect(done.sent).toBe(count)
    // The default sendHighWaterMark is 1 MiB; one message more may sit above it.
    expect(done.maxBufferedAmount).toBeLessThanOrEqual(1024 * 1024 + size)
    peer.socket.destroy()
  })

  it('rejects the send Bun dropped past backpressureLimit with the close error, not as sent (issue 11 #6)', async () => {
    // 512 × 64 KiB sends nobody awaits, to a peer that reads nothing: past the default 5 MiB
    // backpressureLimit, Bun drops one (send() returns 0) and the connection is torn down.
    const id = uniqueId('drop')
    const peer = await rawPeer(server.port, `/bun/drop?id=${id}`)
    peer.socket.pause()
    const outcomes = await eventually(async () => {
      const response = await fetch(`${server.http}/bun/drop-outcomes/${id}`)
      return response.ok ? ((await response.json()) as SendOutcome[]) : undefined
    })
    peer.socket.destroy()
    const dropped = outcomes.filter((outcome) => outcome.endedHere)
    expect(dropped).toHaveLength(1)
    expect(dropped[0]).toMatchObject({ sent: false, code: 1006 })
    expect(dropped[0]?.reason).toMatch(/Bun dropped a message/)
    // The sends before it were taken by Bun; none after it was made.
    expect(outcomes.at(-1)).toBe(dropped[0])
  })

  it("refuses a route whose maxPublishBuffer is not below Bun's backpressureLimit, with a RangeError that names both (issue 18 #5)", async () => {
    // Otherwise Bun drops published messages past backpressureLimit while the core, waiting
    // for maxPublishBuffer, never closes the subscriber: messages lost with no 1008.
    const client = await connect(`${server.ws}/bun/publish-bound-too-high`)
    const closed = await Promise.race([
      client.closed,
      new Promise<'open'>((resolve) => setTimeout(() => resolve('open'), 2000)),
    ])
    expect(closed).toEqual({ code: 1011, reason: 'Internal server error' })
    const logged = await eventually(async () =>
      /RangeError: A route's maxPublishBuffer \(16777216 bytes\) is not below Bun's backpressureLimit \(5242880 bytes\)/.test(
        server.output(),
      )
        ? server.output()
        : undefined,
    )
    expect(logged).toMatch(/raise backpressureLimit above it/)
  })

  it('bounds the pongs Bun queues for a peer that pings and never reads by the default backpressureLimit, 5 MiB (issue 18)', async () => {
    // Bun answers each ping itself and queues the pong; with Bun's own 16 MiB limit, 20 such
    // peers held 323 MB. The default is now the core's maxPublishBuffer (4 MiB) plus 1 MiB.
    const limit = 5 * 1024 * 1024
    const id = uniqueId('pongs')
    const peer = await rawPeer(server.port, `/bun/hold?id=${id}`)
    peer.socket.pause()
    const ping = clientFrame(0x9, new Uint8Array(125).fill(0x61))
    const batch = Buffer.concat(Array.from({ length: 512 }, () => ping))
    const buffered = async () => {
      const response = await fetch(`${server.http}/bun/buffered/${id}`)
      return response.ok ? ((await response.json()) as { bufferedAmount: number }) : undefined
    }
    await eventually(buffered)
    // 24 MiB of pings: more than Bun's old limit, plus what the kernel buffers.
    let peak = 0
    for (let sent = 0; sent < 24 * 1024 * 1024; sent += batch.length) {
      if (!peer.socket.write(batch)) await once(peer.socket, 'drain')
      if (sent % (1024 * 1024) < batch.length) {
        peak = Math.max(peak, (await buffered())?.bufferedAmount ?? 0)
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 300))
    peak = Math.max(peak, (await buffered())?.bufferedAmount ?? 0)
    peer.socket.destroy()
    // Bun refuses a pong once more than the limit is queued: at most one pong above it.
    expect(peak).toBeGreaterThan(limit - 64 * 1024)
    expect(peak).toBeLessThanOrEqual(limit + ping.length)
  })

  it("ends the close handshake as soon as Bun writes the close frame (no wait for the peer's)", async () => {
    // Node waits up to closeHandshakeTimeout for the peer's close frame; Bun closes the TCP
    // connection right after writing its own, so a silent peer costs nothing.
    const id = uniqueId('close-now')
    const peer = await rawPeer(server.port, `/close-timeout?id=${id}`)
    await peer.ended
    expect(closeFrameIn(peer.received())).toEqual({ code: 4000, reason: 'server is done' })
    const seen = await eventually(async () => {
      const record = (await report(server, id)) as (Report & { closeMs?: number }) | undefined
      return record?.closeMs === undefined ? undefined : record
    })
    expect(seen.closeMs).toBeLessThan(300)
  })
})

describe('Bun adapter: entry mistakes get a clear error', () => {
  const cases = [
    {
      mode: 'no-websocket',
      message: 'Bun.serve was started without a `websocket` handler',
    },
    {
      mode: 'lost-server',
      message: 'The Bun server is missing from the Hono env (c.env)',
    },
    {
      mode: 'foreign-websocket',
      message: 'is not the one from @handshake/bun',
    },
  ]
  for (const { mode, message } of cases) {
    it(`${mode}: the first upgrade names what to add`, async () => {
      const server = await startBun(mode)
      try {
        const id = uniqueId(mode)
        if (mode === 'foreign-websocket') {
          // Bun already sent its 101 when the adapter finds the handler is not Handshake's.
          const peer = await rawPeer(server.port, `/echo?id=${id}`)
          peer.socket.destroy()
        } else {
          const response = await refusedUpgrade(`${server.http}/echo?id=${id}`)
          expect(response.status).toBe(500)
          expect(JSON.parse(response.body)).toEqual({ error: 'Internal Server Error' })
        }
        const seen = await eventually(async () => {
          const record = await report(server, id)
          return record?.logged.length ? record : undefined
        })
        const logged = seen.logged.flat().join('\n')
        expect(logged).toContain(message)
        expect(logged).toContain("import { websocket } from '@handshake/bun'")
      } finally {
        await server.stop()
      }
    })
  }
})

describe('Bun adapter: serve() and graceful shutdown', () => {
  it('listens on 127.0.0.1 by default, as on Node and Deno, and the line it prints names it (issue 18 #29)', async () => {
    const server = await startBun('serve-default')
    try {
      expect(server.output()).toContain(`Listening on http://127.0.0.1:${server.port}/\n`)
      // Every 127.x address is loopback: a server on every interface would accept 127.0.0.2.
      const probe = net.connect(server.port, '127.0.0.2')
      const outcome = await new Promise<string>((resolve) => {
        probe.once('connect', () => resolve('accepted'))
        probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'))
      })
      probe.destroy()
      expect(outcome).toBe('ECONNREFUSED')
    } finally {
      await server.stop()
    }
  })

  it('closes every connection with 1001, then stops', async () => {
    const server = await startBun('serve')
    try {
      const clients = await Promise.all(
        [0, 1, 2].map(() => connect(`${server.ws}/echo?id=${uniqueId('shutdown')}`)),
      )
      clients[0]?.socket.send('still here')
      expect(await clients[0]?.next()).toBe('still here')
      const exited = once(server.child, 'exit')
      server.child.kill('SIGTERM')
      const closes = await Promise.all(clients.map((client) => client.closed))
      expect(closes).toEqual(clients.map(() => ({ code: 1001, reason: 'Server shutting down' })))
      const [code] = await exited
      expect(code).toBe(0)
      expect(server.output()).toContain('SHUTDOWN')
    } finally {
      await server.stop()
    }
  })
  it('keeps each TCP connection until its peer answers or the deadline: no reset under unread data', async () => {
    // Bun writes the close frame and a FIN, then reports the end at once. Stopping the server
    // for good at that moment closed sockets with unread data, which makes the kernel send a
    // reset: a peer that is still sending may lose the close frame it had not read yet.
    const server = await startBun('serve')
    try {
      const peer = await rawPeer(server.port, `/hold?id=${uniqueId('shutdown-reset')}`)
      let reset: string | undefined
      peer.socket.on('error', (err: NodeJS.ErrnoException) => {
        reset = err.code
      })
      // Flood until the server stops reading (it pauses past the route's inbound bound) and
      // the kernel's buffers are full: the server then holds data it has not read.
      const frame = clientFrame(0x2, new Uint8Array(1024))
      const floodUntil = Date.now() + 10_000
      while (peer.socket.writableLength < 256 * 1024 && Date.now() < floodUntil) {
        peer.socket.write(frame)
        await new Promise((resolve) => setTimeout(resolve, 0))
      }
      expect(peer.socket.writableLength).toBeGreaterThanOrEqual(256 * 1024)
      // Hold what the server sends in the kernel, unread, while it shuts down.
      peer.socket.pause()
      await server.control.shutdown({ timeout: 5000 })
      // Well before the deadline, when the server may drop what is left.
      await new Promise((resolve) => setTimeout(resolve, 300))
      peer.socket.resume()
      const close = await eventually(() => closeFrameIn(peer.received()))
      expect(close).toEqual({ code: 1001, reason: 'Server shutting down' })
      expect(reset).toBeUndefined()
    } finally {
      await server.stop()
    }
  })
})

describe("Bun adapter: topics through Bun's own tree", () => {
  let server: BunServer
  beforeAll(async () => {
    server = await startBun('entry')
  })
  afterAll(() => server.stop())

  const holders = async (topic: string) =>
    (await (await fetch(`${server.http}/bun/native-subscribers/${topic}`)).json()) as {
      native: number
      handshake: number
    }

  it("subscribes in Bun's tree, and leaves it on close", async () => {
    const topic = uniqueId('native')
    const clients = [
      await connect(`${server.ws}/topic/${topic}`),
      await connect(`${server.ws}/topic-events/${topic}`),
    ]
    for (const client of clients) expect(await client.next()).toBe('joined')
    expect(await holders(topic)).toEqual({ native: 2, handshake: 2 })
    clients[0]?.socket.send('through server.publish')
    expect(await clients[1]?.next()).toBe('through server.publish')
    clients[0]?.socket.close()
    await clients[0]?.closed
    expect(
      await eventually(async () => ((await holders(topic)).native === 1 ? true : undefined)),
    ).toBe(true)
    expect(await holders(topic)).toEqual({ native: 1, handshake: 1 })
  })

  it('gives each server of the documented entry its own hub: a publish on one never reaches the other', async () => {
    const topic = uniqueId('hubs')
    const sibling = (server.sibling as string).replace('http', 'ws')
    const here = await connect(`${server.ws}/topic/${topic}`)
    const there = await connect(`${sibling}/topic/${topic}`)
    expect(await here.next()).toBe('joined')
    expect(await there.next()).toBe('joined')
    const post = (base: string, body: string) =>
      fetch(`${base}/publish/${topic}`, {
        method: 'POST',
        body,
        headers: { 'content-type': 'text/plain' },
      }).then((response) => response.json())
    // Through this server's tree only: Bun's native namespace is per server, and so is the hub.
    expect(await post(server.http, 'here')).toEqual({ subscribers: 1 })
    expect(await post(server.sibling as string, 'there')).toEqual({ subscribers: 1 })
    expect(await here.next()).toBe('here')
    expect(await there.next()).toBe('there')
    await post(server.http, 'end')
    expect(await here.next()).toBe('end')
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(there.messages).toEqual([])
  })

  it('inspects a Conn as its public state in Bun (console.log), not its internals', async () => {
    const client = await connect(`${server.ws}/bun/inspect`)
    const shown = await client.next()
    expect(shown).toMatch(/^Conn \{/)
    expect(shown).toMatch(/state: 'open'/)
    expect(shown).toMatch(/'inspected'/)
    expect(shown).not.toMatch(/Symbol\(|Connections|Topics|socket/)
    client.socket.close()
  })

  it("leaves Bun's tree alone with slowSubscriber 'drop': the core sends, and counts", async () => {
    const topic = uniqueId('drop')
    const client = await connect(`${server.ws}/topic-drop/${topic}`)
    expect(await client.next()).toBe('joined')
    expect(await holders(topic)).toEqual({ native: 0, handshake: 1 })
    await fetch(`${server.http}/publish/${topic}`, {
      method: 'POST',
      body: 'from the core',
      headers: { 'content-type': 'text/plain' },
    })
    expect(await client.next()).toBe('from the core')
  })
})

describe('Bun adapter: serve() with a backplane that fails to close', () => {
  // It failed before: the first shutdown() rejected with the backplane's error.
  it('runs the shutdown once, resolves every call, logs the failure, and lets the process end', async () => {
    const entry = join(packageDir, 'test', 'shutdown-backplane.ts')
    const { stdout } = await promisify(execFile)(bunBinary(), [entry], {
      cwd: packageDir,
      timeout: 20_000,
    })
    const report = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}')
    expect(report).toMatchObject(expectedBackplaneCloseReport)
    expect(report.logged).toHaveLength(1)
    expect(report.logged[0]).toMatch(/backplane failed to close.*the engine went away/s)
  })
})
