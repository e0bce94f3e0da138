import { execFile } from 'node:child_process'
import { get } from 'node:http'
import { connect } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { conformanceSuite, Opcode, RawPeer } from '@handshake/conformance'
import { expectedBackplaneCloseReport } from '@handshake/conformance/shutdown-backplane'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DenoProcess, denoBinary, startDeno } from './deno-process.js'

let counter = 0
const nextId = (prefix: string) => `${prefix}-${process.pid}-${++counter}`
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const utf8 = (text: string) => new TextEncoder().encode(text)

conformanceSuite({
  name: 'deno',
  async start() {
    const deno = await startDeno()
    return {
      url: deno.url,
      sibling: deno.sibling,
      stop: () => deno.stop(),
      shutdown: (options) => deno.control.shutdown(options),
      report: (id) => deno.control.report(id),
    }
  },
  differences: {
    // Deno has no API to send a ping (it pings on its own, see idleTimeout).
    ping: false,
    // Deno cannot destroy one upgraded connection: the Conn settles at the timeout, TCP stays.
    terminateOnTimeout: false,
    // Deno cannot pause reading a socket: an inbound flood closes with 1008.
    pauseInbound: false,
    // Since Deno 2, headers on the upgrade response reach the client (denoland/deno#19277).
    upgradeHeaders: true,
    middlewareHeaders: true,
    // Deno reads an unmasked client frame as a message instead of failing with 1002.
    rejectsUnmasked: false,
    // Deno resets TCP on data after its close frame, so a flooding peer may miss the 1008.
    // Deno refuses invalid UTF-8 with 1007, as Node does.
    rejectsInvalidUtf8: true,
    awaitsCloseAnswer: true,
    closeReachesSendingPeer: false,
    // Deno cannot stop listening without cutting every WebSocket: it listens until the end.
    listensDuringShutdown: true,
    // No event at all for a socket whose client left before the 101 was written.
    silentAbandonedUpgrade: true,
    // Deno reads a whole message (up to 64 MiB) before the core can check maxMessageSize.
    refusesOversizedEarly: false,
    publishBound: true,
  },
})

describe('@handshake/deno on the real Deno', () => {
  let deno: DenoProcess
  const report = (id: string) => deno.waitFor((line) => line.report === id)

  beforeAll(async () => {
    deno = await startDeno()
  })
  afterAll(async () => {
    await deno?.stop()
  })

  describe('close codes and reasons', () => {
    const cases: [number, string][] = [
      [1000, ''],
      [1001, 'going away'],
      [1003, 'unsupported'],
      [1008, 'policy'],
      [1011, 'internal'],
      [3000, 'registered'],
      [4999, `unicode é 😀 ${'r'.repeat(100)}`],
    ]

    it.each(cases)(
      'a peer close %i reaches CloseError with its reason, and is echoed',
      async (code, reason) => {
        const id = nextId('read-close')
        const peer = await RawPeer.connect(deno.url, `/deno/read-close?id=${id}`)
        peer.close(code, reason)
        await expect(report(id)).resolves.toMatchObject({ code, reason, wasClean: true })
        // Deno answers the peer's close frame itself, with the same code.
        await expect(peer.closeFrame).resolves.toMatchObject({ code })
        await peer.ended
      },
    )

    it('a close frame with no code reaches CloseError as 1005', async () => {
      const id = nextId('read-close-empty')
      const peer = await RawPeer.connect(deno.url, `/deno/read-close?id=${id}`)
      peer.close()
      await expect(report(id)).resolves.toMatchObject({ code: 1005, reason: '', wasClean: true })
      await expect(peer.closeFrame).resolves.toMatchObject({ code: 1005, reason: '' })
    })

    it('a peer that vanishes reaches CloseError as 1006', async () => {
      const id = nextId('read-close-vanish')
      const peer = await RawPeer.connect(deno.url, `/deno/read-close?id=${id}`)
      await sleep(50)
      peer.vanish()
      await expect(report(id)).resolves.toMatchObject({ code: 1006, wasClean: false })
    })

    it.each([
      [1001, 'bye'],
      [1011, 'Internal server error'],
      [4321, `custom é 😀 ${'s'.repeat(100)}`],
    ] as [number, string][])(
      'conn.close(%i) reaches the peer with its reason',
      async (code, reason) => {
        const id = nextId('server-close')
        const query = new URLSearchParams({ id, code: String(code), reason })
        const peer = await RawPeer.connect(deno.url, `/deno/server-close?${query}`)
        await expect(peer.closeFrame).resolves.toMatchObject({ code, reason })
        const done = await report(id)
        expect(done).toMatchObject({ state: 'closed' })
        expect(done.closeMs).toBeLessThan(5000)
      },
    )
  })

  it("a data frame after the server close frame makes Deno drop TCP: the peer sees no clean close, serve ends with the server's own code (issue 18 #24)", async () => {
    const id = nextId('server-close-data')
    const peer = await RawPeer.connect(
      deno.url,
      `/deno/server-close?id=${id}&code=1008&reason=policy`,
      {
        answerClose: false,
      },
    )
    await expect(peer.closeFrame).resolves.toMatchObject({ code: 1008, reason: 'policy' })
    const sentAt = Date.now()
    // RFC 6455 lets the peer finish sending before it answers; Deno ends the connection instead.
    peer.send('still talking')
    const ended = await peer.ended
    expect(ended - sentAt).toBeLessThan(2000)
    // The close was the server's: it ends with its own code, not as abnormal (1006).
    await expect(report(`${id}:end`)).resolves.toMatchObject({
      code: 1008,
      reason: 'policy',
      wasClean: false,
    })
  })

  it('c.req stays readable in serve after Deno released the request', async () => {
    const id = nextId('request')
    const peer = await RawPeer.connect(deno.url, `/deno/request?id=${id}&q=kept`, {
      headers: { 'X-Probe': 'still here' },
    })
    const message = await peer.read()
    expect(message.type).toBe('text')
    expect(JSON.parse(String(message.data))).toMatchObject({
      probe: 'still here',
      url: `${deno.url}/deno/request?id=${id}&q=kept`,
      query: 'kept',
    })
    peer.close(1000)
    await report(id)
  })

  describe('upgrade headers (denoland/deno#19277)', () => {
    let peer: RawPeer
    const id = nextId('headers')
    beforeAll(async () => {
      peer = await RawPeer.connect(deno.url, `/deno/headers?id=${id}`)
    })
    afterAll(async () => {
      peer.close(1000)
      await report(id)
    })

    // Headers joins repeated fields with ", ", so toBe also proves each came once.
    it('reach the 101 response, each Set-Cookie on its own line', () => {
      expect(peer.headers.get('x-handshake')).toBe('yes')
      expect(peer.headers.getSetCookie()).toEqual(['a=1; Path=/', 'b=2; Path=/'])
    })

    it('set by middleware on c.res after next() reach the 101 response too', () => {
      expect(peer.headers.get('x-after-next')).toBe('middleware')
    })
  })

  describe('protocol faults from the peer (differences from Node)', () => {
    it('invalid UTF-8 ends serve with 1007; Deno drops TCP with no close frame', async () => {
      const id = nextId('fault-utf8')
      const peer = await RawPeer.connect(deno.url, `/deno/read-close?id=${id}`)
      peer.sendFrame({ opcode: Opcode.Text, payload: new Uint8Array([0xff, 0xfe]) })
      await expect(report(id)).resolves.toMatchObject({ code: 1007, wasClean: false })
      await peer.ended
      // Node's ws sends close 1007 first; Deno ends the TCP connection at once.
      expect(await peer.closeFrame).toBeUndefined()
    })

    it('a reserved opcode ends serve with 1002', async () => {
      const id = nextId('fault-opcode')
      const peer = await RawPeer.connect(deno.url, `/deno/read-close?id=${id}`)
      peer.sendFrame({ opcode: 3, payload: utf8('x') })
      await expect(report(id)).resolves.toMatchObject({ code: 1002, wasClean: false })
      await peer.ended
    })

    it('an unmasked client frame is accepted as a message (Deno does not enforce masking)', async () => {
      const id = nextId('fault-unmasked')
      const peer = await RawPeer.connect(deno.url, `/deno/read-close?id=${id}`)
      peer.sendFrame({ opcode: Opcode.Text, payload: utf8('unmasked'), mask: false })
      await sleep(100)
      peer.close(1000)
      await expect(report(id)).resolves.toMatchObject({ messages: 1, code: 1000, wasClean: true })
    })
  })

  it('a close-handshake timeout ends the Conn with 1006, but Deno keeps the TCP connection (no terminate)', async () => {
    const id = nextId('timeout')
    const peer = await RawPeer.connect(deno.url, `/deno/timeout?id=${id}`, { answerClose: false })
    await expect(peer.closeFrame).resolves.toMatchObject({
      code: 4000,
      reason: 'no answer expected',
    })
    const started = Date.now()
    await expect(report(id)).resolves.toMatchObject({ code: 1006, wasClean: false })
    expect(Date.now() - started).toBeLessThan(5000)
    // The core cannot tear the connection down on Deno: TCP stays open until the peer leaves.
    const ended = await Promise.race([peer.ended, sleep(1500).then(() => 'still open')])
    expect(ended).toBe('still open')
    peer.vanish()
  })

  it('has no timeout on request headers: connections that send them slowly stay open, others are still served (documented)', async () => {
    // Deno.serve has no option for it (Deno 2.9.6). The README gives the figure: 200 such
    // connections were all still open after 40 s.
    const sockets = Array.from({ length: 20 }, () => connect(deno.port, '127.0.0.1'))
    const closed = new Set<number>()
    const timers: ReturnType<typeof setInterval>[] = []
    sockets.forEach((socket, index) => {
      socket.on('error', () => {})
      socket.once('close', () => closed.add(index))
      socket.once('connect', () => {
        socket.write('GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n')
        timers.push(setInterval(() => socket.write(`X-Slow-${Date.now()}: 1\r\n`), 500))
      })
    })
    try {
      await sleep(5000)
      expect(closed.size).toBe(0)
      expect((await fetch(`${deno.url}/health`)).status).toBe(200)
    } finally {
      for (const timer of timers) clearInterval(timer)
      for (const socket of sockets) socket.destroy()
    }
  })

  it("Deno's idleTimeout closes a peer that never answers pings; serve sees 1006", async () => {
    const id = nextId('idle')
    const peer = await RawPeer.connect(deno.idle, `/deno/idle?id=${id}`, { answerPings: false })
    // The raw peer never answers pings: Deno pings, then gives up after idleTimeout (1 s).
    await expect(peer.closeFrame).resolves.toMatchObject({
      code: 1001,
      reason: 'No response from ping frame.',
    })
    expect(peer.frames[0]?.opcode).toBe(Opcode.Ping)
    const done = await report(id)
    expect(done).toMatchObject({ code: 1006, wasClean: false })
    expect(done.reason).toMatch(/ping/)
  })

  it('back-pressure: send waits on bufferedAmount while the peer does not read', async () => {
    const id = nextId('flood')
    const peer = await RawPeer.connect(deno.url, `/deno/flood?id=${id}&size=65536&count=256`, {
      paused: true,
    })
    // 16 MiB cannot fit in the loopback buffers: serve must be stuck in send.
    const early = await Promise.race([report(id), sleep(1500).then(() => 'waiting')])
    expect(early).toBe('waiting')
    peer.resume()
    const done = await report(id)
    expect(done).toMatchObject({ sent: 256 })
    // Each send resolved only once Deno held no more than the high-water mark (64 KiB).
    expect(done.peak as number).toBeGreaterThan(0)
    expect(done.peak as number).toBeLessThanOrEqual(64 * 1024)
    peer.close(1000)
    await expect(report(`${id}:end`)).resolves.toMatchObject({ code: 1000 })
  })
})

describe('@handshake/deno serve() defaults', () => {
  it('listens on 127.0.0.1, so --allow-net=127.0.0.1 is enough, and prints where (issue 18 #29)', async () => {
    // startDeno grants the network on 127.0.0.1 only: a server on 0.0.0.0 fails to start.
    const deno = await startDeno(['default-host'])
    try {
      expect(deno.output).toContain(`Listening on http://127.0.0.1:${deno.port}/`)
      // Every 127.x address is loopback: a server on every interface would accept 127.0.0.2.
      const probe = connect(deno.port, '127.0.0.2')
      const outcome = await new Promise<string>((resolve) => {
        probe.once('connect', () => resolve('accepted'))
        probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'))
      })
      probe.destroy()
      expect(outcome).toBe('ECONNREFUSED')
    } finally {
      await deno.stop()
    }
  })
})

/** GETs `/deno/stream`, a response that never ends; resolves once its first chunk arrived. */
async function openStream(port: number): Promise<{ ended: Promise<number> }> {
  return new Promise((resolve, reject) => {
    get(`http://127.0.0.1:${port}/deno/stream`, (response) => {
      const ended = new Promise<number>((settle) => {
        response.once('close', () => settle(Date.now()))
        response.once('error', () => settle(Date.now()))
      })
      response.once('data', () => resolve({ ended }))
      response.resume()
    }).once('error', reject)
  })
}

/** How long a shutdown took, or 'still waiting' after `limitMs`. */
async function timedShutdown(deno: DenoProcess, timeout: number, limitMs: number) {
  const started = Date.now()
  return Promise.race([
    deno.control.shutdown({ timeout }).then(() => Date.now() - started),
    sleep(limitMs).then(() => 'still waiting' as const),
  ])
}

describe("@handshake/deno serve(): the shutdown's deadline (issue 18 #22)", () => {
  it('resolves by its deadline while an HTTP response is still streaming', async () => {
    const deno = await startDeno()
    try {
      await openStream(deno.port)
      // No WebSocket: the core's part ends at once, and Deno's graceful stop waits for the
      // response, which never ends.
      const elapsed = await timedShutdown(deno, 1000, 6000)
      expect(elapsed).toBeGreaterThanOrEqual(900)
      expect(elapsed).toBeLessThan(2500)
    } finally {
      await deno.stop()
    }
  })

  it('at the deadline, cuts a peer that never answered and the streaming response', async () => {
    const deno = await startDeno()
    try {
      const id = nextId('shutdown-silent-stream')
      const peer = await RawPeer.connect(deno.url, `/deno/read-close?id=${id}`, {
        answerClose: false,
      })
      const stream = await openStream(deno.port)
      const elapsed = await timedShutdown(deno, 1000, 6000)
      expect(elapsed).toBeGreaterThanOrEqual(900)
      expect(elapsed).toBeLessThan(2500)
      await expect(peer.closeFrame).resolves.toMatchObject({ code: 1001 })
      const resolvedAt = Date.now()
      // Deno keeps a peer that never answers a close frame; the deadline's cut ends it.
      const ends = await Promise.race([
        Promise.all([peer.ended, stream.ended]),
        sleep(3000).then(() => 'still open' as const),
      ])
      expect(ends).not.toBe('still open')
      for (const end of ends as number[]) expect(end - resolvedAt).toBeLessThan(1000)
    } finally {
      await deno.stop()
    }
  })
})

describe('@handshake/deno: the upgrade request once open', () => {
  // It failed before: Deno's idle-timeout listener kept the request for the socket's life.
  it('is released by Deno, while c.req still reads its headers', async () => {
    const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..')
    const { stdout } = await promisify(execFile)(
      denoBinary(),
      [
        'run',
        '--no-prompt',
        '--allow-net=127.0.0.1',
        '--v8-flags=--expose-gc',
        join(packageDir, 'test', 'released-request.ts'),
      ],
      { cwd: packageDir, timeout: 20_000, env: { ...process.env, DENO_NO_UPDATE_CHECK: '1' } },
    )
    const report = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}')
    expect(report).toEqual({ header: 'kept', released: true })
  })

  // The documented exception: Hono's Context keeps the request it was made with (its private
  // #rawRequest, which c.req.raw = copy does not change), so a serve that holds c holds it.
  it("stays with a serve that holds c: Hono's Context keeps it (documented)", async () => {
    const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..')
    const { stdout } = await promisify(execFile)(
      denoBinary(),
      [
        'run',
        '--no-prompt',
        '--allow-net=127.0.0.1',
        '--v8-flags=--expose-gc',
        join(packageDir, 'test', 'released-request.ts'),
        'serve',
      ],
      { cwd: packageDir, timeout: 20_000, env: { ...process.env, DENO_NO_UPDATE_CHECK: '1' } },
    )
    const report = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}')
    expect(report).toEqual({ header: 'kept', released: false })
  })
})

describe('@handshake/deno: the bound on bufferedAmount the core trusts (bufferedAtMost)', () => {
  // A runtime contract, not a fixed defect: the core reads no bufferedAmount while the adapter's
  // bound is within its limit, so a Deno that counted more than the bound would let back-pressure
  // slip without any error. It fails when the bound counts a string's UTF-16 units, not 3 each.
  it('is at least what Deno counts after each send, for text of any width and binary views', async () => {
    const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..')
    const { stdout } = await promisify(execFile)(
      denoBinary(),
      [
        'run',
        '--no-prompt',
        '--allow-net=127.0.0.1',
        join(packageDir, 'test', 'buffered-count.ts'),
      ],
      { cwd: packageDir, timeout: 20_000, env: { ...process.env, DENO_NO_UPDATE_CHECK: '1' } },
    )
    const report = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}')
    expect(report).toEqual({ below: [], counted: true })
  })
})

describe('@handshake/deno serve(): a backplane that fails to close', () => {
  // It failed before: the first shutdown() rejected with the backplane's error.
  it('runs the shutdown once, resolves every call, logs the failure, and lets the process end', async () => {
    const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..')
    const entry = join(packageDir, 'test', 'shutdown-backplane.ts')
    const { stdout } = await promisify(execFile)(
      denoBinary(),
      ['run', '--no-prompt', '--allow-net=127.0.0.1', entry],
      { cwd: packageDir, timeout: 20_000, env: { ...process.env, DENO_NO_UPDATE_CHECK: '1' } },
    )
    const report = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}')
    expect(report).toMatchObject(expectedBackplaneCloseReport)
    expect(report.logged).toHaveLength(1)
    expect(report.logged[0]).toMatch(/backplane failed to close.*the engine went away/s)
  })
})
