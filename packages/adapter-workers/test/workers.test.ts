/**
 * `@handshake/workers` in real workerd (Miniflare on 127.0.0.1): what only Workers has to prove,
 * and the differences from Node, asserted as differences.
 */
import { encodeFrame, Opcode, RawPeer } from '@handshake/conformance'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type RunningWorker, startWorker } from './miniflare.js'
import { FLOOD_MESSAGE_BYTES, FLOOD_MESSAGES } from './shared.js'

const HUNG = 'code had hung'
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Polls `read` until `accept` says yes, or fails after `timeoutMs`. */
async function eventually<T>(
  read: () => Promise<T>,
  accept: (value: T) => boolean,
  timeoutMs = 5000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await read()
    if (accept(value)) return value
    if (Date.now() > deadline)
      throw new Error(`not true within ${timeoutMs} ms: ${JSON.stringify(value)}`)
    await sleep(50)
  }
}

async function json(url: string): Promise<Record<string, unknown> | undefined> {
  const response = await fetch(url)
  return response.status === 404 ? undefined : ((await response.json()) as Record<string, unknown>)
}

/** The payload of the first close frame the server sent. */
const closePayload = (peer: RawPeer) =>
  peer.frames.find((frame) => frame.opcode === Opcode.Close)?.payload

/** Every peer a test opened, dropped after it so that none outlives its test. */
const openPeers = new Set<RawPeer>()
/** A peer that answers nothing by itself: the tests send every close frame by hand. */
async function dial(url: string, path: string): Promise<RawPeer> {
  const peer = await RawPeer.connect(url, path, { answerClose: false, answerPings: false })
  openPeers.add(peer)
  return peer
}
afterEach(() => {
  for (const peer of openPeers) peer.vanish()
  openPeers.clear()
})

describe('workerd, compatibility date 2026-04-26', () => {
  let worker: RunningWorker
  const report = (id: string) => json(`${worker.url}/report/${id}`)
  const record = (id: string) => json(`${worker.url}/workers/record/${id}`)

  beforeAll(async () => {
    worker = await startWorker()
  })
  afterAll(async () => {
    await worker?.stop()
  })

  it('answers a close frame with no code with no code, and serve sees 1005', async () => {
    const peer = await dial(worker.url, '/echo?id=close-1005')
    peer.send('hi')
    await peer.read()
    peer.close()
    await peer.closeFrame
    expect(closePayload(peer)?.byteLength).toBe(0)
    const seen = await eventually(
      () => report('close-1005'),
      (r) => r?.settled === true,
    )
    expect(seen?.readError).toMatchObject({ name: 'CloseError', code: 1005, wasClean: true })
    expect(peer.closeFramesReceived).toBe(1)
    await sleep(300)
    expect(worker.output()).not.toContain('Invalid WebSocket close code')
    expect(worker.output()).not.toContain(HUNG)
  })

  it('answers a close frame with its own code and reason', async () => {
    const peer = await dial(worker.url, '/echo?id=close-4000')
    peer.close(4000, 'see you')
    expect(await peer.closeFrame).toMatchObject({ code: 4000, reason: 'see you' })
    const seen = await eventually(
      () => report('close-4000'),
      (r) => r?.settled === true,
    )
    expect(seen?.readError).toMatchObject({ code: 4000, reason: 'see you', wasClean: true })
    await peer.ended
    expect(peer.closeFramesReceived).toBe(1)
  })

  it('difference: at the close timeout the connection settles but TCP stays up (no terminate)', async () => {
    const peer = await dial(worker.url, '/workers/close-first?id=timeout')
    expect(await peer.closeFrame).toMatchObject({ code: 4000, reason: 'server is done' })
    // The peer never answers: close() resolves at the 300 ms timeout, the Conn is closed...
    const seen = await eventually(
      () => record('timeout'),
      (r) => r?.closeMs !== undefined,
    )
    expect(seen?.stateAfterClose).toBe('closed')
    expect(seen?.closeMs).toBeGreaterThanOrEqual(250)
    expect(seen?.closeMs).toBeLessThan(5000)
    // ...but workerd cannot tear the TCP connection down: it is still up well after the timeout.
    const endedEarly = await Promise.race([
      peer.ended.then(() => true),
      sleep(1000).then(() => false),
    ])
    expect(endedEarly).toBe(false)
    // The adapter dropped the socket: a late answer changes nothing and breaks nothing.
    peer.close(4000, 'late')
    await sleep(300)
    expect(await record('timeout')).toEqual(seen)
    expect(peer.closeFramesReceived).toBe(1)
    peer.vanish()
    await sleep(300)
    expect(worker.output()).not.toContain(HUNG)
  })

  it('keeps serve running after the client leaves, with no "code had hung"', async () => {
    const peer = await dial(worker.url, '/workers/after-close?id=leaves')
    // serve is asleep on a timer: without the adapter's waitUntil, workerd would cancel it
    // when the socket ends, and serve would never wake up.
    peer.send('hi')
    peer.close(1001, 'leaving')
    expect(await peer.closeFrame).toBeDefined()
    const seen = await eventually(
      () => record('leaves'),
      (r) => r?.finishedAfterClose === true,
    )
    expect(seen?.endedWith).toBe(1001)
    await sleep(300)
    expect(worker.output()).not.toContain(HUNG)
  })

  it('reports a protocol error with the code workerd names (1002 for a bad opcode)', async () => {
    const peer = await dial(worker.url, '/echo?id=bad-opcode')
    peer.sendFrame({ opcode: 0x3, payload: new TextEncoder().encode('hi') })
    // workerd sends its own close frame...
    expect((await peer.closeFrame)?.code).toBe(1002)
    // ...and tells the adapter only in the error's message, which the adapter maps to 1002.
    const seen = await eventually(
      () => report('bad-opcode'),
      (r) => r?.settled === true,
    )
    expect(seen?.readError).toMatchObject({ name: 'CloseError', code: 1002, wasClean: false })
  })

  it('difference: invalid UTF-8 in a text frame arrives as U+FFFD, not as a 1007 close', async () => {
    const peer = await dial(worker.url, '/echo?id=bad-utf8')
    peer.sendFrame({ opcode: Opcode.Text, payload: Uint8Array.from([0x68, 0xff, 0x69]) })
    expect(await peer.read()).toEqual({ type: 'text', data: 'h\uFFFDi' })
  })

  it('difference: an unmasked client frame is accepted, not closed with 1002', async () => {
    const peer = await dial(worker.url, '/echo?id=unmasked')
    peer.sendFrame({ opcode: Opcode.Text, payload: new TextEncoder().encode('raw'), mask: false })
    expect(await peer.read()).toEqual({ type: 'text', data: 'raw' })
  })

  it('refuses permessage-deflate by default, though the client offers it and workerd would take it', async () => {
    const offer = { 'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits' }
    const peer = await RawPeer.connect(worker.url, '/echo', { headers: offer })
    openPeers.add(peer)
    expect(peer.headers.get('sec-websocket-extensions')).toBeNull()
    peer.send('plain')
    expect((await peer.read(5000)).data).toBe('plain')
    // A compressed frame (RSV1) is a protocol error on a connection without the extension.
    peer.sendFrame({ opcode: Opcode.Text, payload: new Uint8Array([0x2a, 0x01, 0x00]), rsv: 4 })
    expect(await peer.closeFrame).toMatchObject({ code: 1002 })
  })

  it('negotiates permessage-deflate when the app names it on the 101', async () => {
    const offer = { 'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits' }
    const peer = await RawPeer.connect(worker.url, '/workers/deflate', { headers: offer })
    openPeers.add(peer)
    expect(peer.headers.get('sec-websocket-extensions')).toMatch(/^permessage-deflate/)
  })

  it('sends no extension header to a client that offers none', async () => {
    const peer = await RawPeer.connect(worker.url, '/echo')
    openPeers.add(peer)
    expect(peer.headers.get('sec-websocket-extensions')).toBeNull()
    peer.send('plain')
    expect((await peer.read(5000)).data).toBe('plain')
  })

  it('difference: workerd takes any number of empty continuation frames in one message', async () => {
    const peer = await dial(worker.url, '/echo')
    // 100,000 empty continuation frames (600 KB on the wire) around a 2-byte message: workerd
    // keeps every one until the last, and the core sees one message. The 5,000,000 took
    // 206 to 245 MB in workerd; nothing before the whole message reaches the core can bound it.
    const empty = encodeFrame({ opcode: Opcode.Continuation, fin: false })
    const frames = [
      encodeFrame({ opcode: Opcode.Text, fin: false, payload: new Uint8Array([0x61]) }),
    ]
    for (let i = 0; i < 100_000; i++) frames.push(empty)
    frames.push(encodeFrame({ opcode: Opcode.Continuation, payload: new Uint8Array([0x62]) }))
    const wire = new Uint8Array(frames.reduce((sum, f) => sum + f.byteLength, 0))
    let offset = 0
    for (const f of frames) {
      wire.set(f, offset)
      offset += f.byteLength
    }
    peer.write(wire)
    expect((await peer.read(10_000)).data).toBe('ab')
  })

  it('difference: bufferedAmount stays 0, so sends resolve with a peer that reads nothing', async () => {
    const peer = await dial(worker.url, '/workers/flood?id=flood')
    peer.pause()
    const seen = await eventually(
      () => record('flood'),
      (r) => (r?.flood as { resolved: number } | undefined)?.resolved === FLOOD_MESSAGES,
      15_000,
    )
    expect(seen?.flood).toEqual({ resolved: FLOOD_MESSAGES, maxBufferedAmount: 0 })
    expect(FLOOD_MESSAGES * FLOOD_MESSAGE_BYTES).toBeGreaterThan(4 * 1024 * 1024)
  })
})

// Before web_socket_auto_reply_to_close (2026-04-07), workerd left a peer's close frame for the
// Worker to answer; the adapter answers it, with the same code, or with none for 1005.
describe('workerd, compatibility date 2025-06-01 (before the automatic close reply)', () => {
  const OLD_DATE = '2025-06-01'

  it('control: a Worker that leaves the close unanswered makes workerd report "code had hung"', async () => {
    // What Hono's own helper did (honojs/hono#4603): echo, and never answer the peer's close.
    const script = `export default {
      fetch() {
        const { 0: client, 1: server } = new WebSocketPair()
        server.accept()
        server.addEventListener('message', (event) => server.send(event.data))
        return new Response(null, { status: 101, webSocket: client })
      },
    }`
    const worker = await startWorker({ compatibilityDate: OLD_DATE, script })
    try {
      const peer = await dial(worker.url, '/')
      peer.send('hi')
      await peer.read()
      peer.close(1000, 'bye')
      await eventually(
        async () => worker.output(),
        (output) => output.includes(HUNG),
      )
      peer.vanish()
    } finally {
      await worker.stop()
    }
  })

  describe('with the adapter', () => {
    let worker: RunningWorker
    beforeAll(async () => {
      worker = await startWorker({ compatibilityDate: OLD_DATE })
    })
    afterAll(async () => {
      await worker?.stop()
    })

    it('answers a close frame with no code with no code (close(1005) would throw)', async () => {
      const peer = await dial(worker.url, '/echo?id=old-1005')
      // A message first: that is what made Hono's helper hang.
      peer.send('hi')
      await peer.read()
      peer.close()
      await peer.closeFrame
      expect(closePayload(peer)?.byteLength).toBe(0)
      const seen = await eventually(
        () => json(`${worker.url}/report/old-1005`),
        (r) => r?.settled === true,
      )
      expect(seen?.readError).toMatchObject({ code: 1005, wasClean: true })
      await sleep(500)
      peer.vanish()
      expect(worker.output()).not.toContain('Invalid WebSocket close code')
      expect(worker.output()).not.toContain(HUNG)
    })

    it('answers a close frame with its own code and reason', async () => {
      const peer = await dial(worker.url, '/echo?id=old-4000')
      // A message first: that is what made Hono's helper hang.
      peer.send('hi')
      await peer.read()
      peer.close(4000, 'see you')
      expect(await peer.closeFrame).toMatchObject({ code: 4000, reason: 'see you' })
      await sleep(500)
      peer.vanish()
      expect(peer.closeFramesReceived).toBe(1)
      expect(worker.output()).not.toContain(HUNG)
    })

    it('closes first and completes the handshake when the peer answers', async () => {
      const peer = await dial(worker.url, '/workers/close-first?id=old-close-first&timeout=10000')
      expect((await peer.closeFrame)?.code).toBe(4000)
      peer.close(4000, 'ok')
      const seen = await eventually(
        () => json(`${worker.url}/workers/record/old-close-first`),
        (r) => r?.closeMs !== undefined,
      )
      // Well under the 10 s timeout: the peer's answer, not the timer, ended the handshake.
      expect(seen?.closeMs).toBeLessThan(5000)
      expect(seen?.stateAfterClose).toBe('closed')
      expect(peer.closeFramesReceived).toBe(1)
      await sleep(300)
      peer.vanish()
      expect(worker.output()).not.toContain(HUNG)
    })
  })
})
