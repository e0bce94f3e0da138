/**
 * A WebSocket client written on `node:net`: it does the HTTP handshake itself and speaks frames
 * byte by byte, so it can do what no client library allows: never answer a close frame, send
 * invalid UTF-8, an unmasked frame or a reserved opcode, vanish mid-message, close with no code,
 * count the close frames the server sends, never answer a ping, stop reading.
 * @module
 */
import { createHash, randomBytes } from 'node:crypto'
import type { Socket } from 'node:net'
import {
  closePayload,
  encodeFrame,
  type Frame,
  FrameDecoder,
  type FrameSpec,
  Opcode,
  parseClosePayload,
} from './frames.js'
import { openSocket, readBody, readHead, writeRequest } from './http.js'
import {
  type ControlledPeer,
  type DialOptions,
  Inbox,
  type PeerClose,
  PeerUpgradeRejected,
  type ProtocolFault,
  type ReceivedClose,
} from './peers.js'

const ACCEPT_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

/** The options of {@link RawPeer.connect}. */
export interface RawPeerOptions extends DialOptions {
  /** Mask the frames the peer sends, as RFC 6455 §5.3 requires of clients. @defaultValue true */
  mask?: boolean
  /** Answer the server's pings with pongs. @defaultValue true */
  answerPings?: boolean
  /** Read nothing after the 101 until {@link RawPeer.resume}. @defaultValue false */
  paused?: boolean
  /** See {@link RawPeer.discard}. @defaultValue false */
  discard?: boolean
}

/** A WebSocket client over raw TCP. See the module comment. */
export class RawPeer implements ControlledPeer {
  readonly client = 'raw' as const
  readonly protocol: string
  readonly headers: Headers
  readonly closeFrame: Promise<ReceivedClose | undefined>
  readonly closed: Promise<PeerClose>
  readonly ended: Promise<number>
  answerClose: boolean
  /** Whether sent frames are masked. */
  mask: boolean
  /** Whether the server's pings are answered. */
  answerPings: boolean
  /**
   * Drop data messages instead of queueing them for `read()`, and keep only control frames in
   * `frames`: for a flood that would otherwise fill memory.
   */
  discard: boolean
  /** Every frame the server sent, in order. */
  readonly frames: Frame[] = []

  readonly #socket: Socket
  readonly #decoder = new FrameDecoder()
  readonly #inbox = new Inbox()
  #fragments: Uint8Array[] = []
  #fragmentOpcode = 0
  #sentClose = false
  #bytesReceived = 0
  #firstClose: ReceivedClose | undefined
  #settleCloseFrame!: (close: ReceivedClose | undefined) => void
  #settleClosed!: (close: PeerClose) => void
  #settleEnded!: (at: number) => void

  private constructor(socket: Socket, headers: Headers, options: RawPeerOptions) {
    this.#socket = socket
    this.headers = headers
    this.protocol = headers.get('sec-websocket-protocol') ?? ''
    this.answerClose = options.answerClose ?? true
    this.mask = options.mask ?? true
    this.answerPings = options.answerPings ?? true
    this.discard = options.discard ?? false
    this.closeFrame = new Promise((resolve) => {
      this.#settleCloseFrame = resolve
    })
    this.closed = new Promise((resolve) => {
      this.#settleClosed = resolve
    })
    this.ended = new Promise((resolve) => {
      this.#settleEnded = resolve
    })
    socket.on('data', (chunk: Buffer) => {
      this.#bytesReceived += chunk.byteLength
      for (const frame of this.#decoder.push(chunk)) this.#onFrame(frame)
    })
    socket.once('close', () => this.#onEnd())
  }

  /**
   * Opens a connection: the HTTP handshake, checked (101 and `Sec-WebSocket-Accept`).
   * @throws PeerUpgradeRejected with the whole answer when the server refuses
   */
  static async connect(
    baseUrl: string,
    path: string,
    options: RawPeerOptions = {},
  ): Promise<RawPeer> {
    const socket = await openSocket(baseUrl)
    // A reset from the server ends the connection; it must not throw.
    socket.on('error', () => {})
    const key = randomBytes(16).toString('base64')
    const headers: Record<string, string> = {
      Upgrade: 'websocket',
      Connection: 'Upgrade',
      'Sec-WebSocket-Key': key,
      'Sec-WebSocket-Version': '13',
      ...options.headers,
    }
    if (options.protocols?.length) headers['Sec-WebSocket-Protocol'] = options.protocols.join(', ')
    const head = readHead(socket)
    writeRequest(socket, baseUrl, path, { headers })
    let response: Awaited<typeof head>
    try {
      response = await head
    } catch (err) {
      socket.destroy()
      throw err
    }
    if (response.status !== 101) {
      const body = await readBody(socket, response).catch(() => '')
      socket.destroy()
      throw new PeerUpgradeRejected(response.status, response.headers, body)
    }
    const expected = createHash('sha1')
      .update(key + ACCEPT_GUID)
      .digest('base64')
    if (response.headers.get('sec-websocket-accept') !== expected) {
      socket.destroy()
      throw new Error('The server sent a wrong Sec-WebSocket-Accept')
    }
    const peer = new RawPeer(socket, response.headers, options)
    if (response.rest.byteLength) {
      peer.#bytesReceived += response.rest.byteLength
      for (const frame of peer.#decoder.push(response.rest)) peer.#onFrame(frame)
    }
    if (!options.paused) socket.resume()
    return peer
  }

  /** How many close frames the server sent. */
  get closeFramesReceived(): number {
    return this.frames.filter((frame) => frame.opcode === Opcode.Close).length
  }

  /** Bytes written but not yet taken by the kernel. */
  get bufferedAmount(): number {
    return this.#socket.writableLength
  }

  /** True until the TCP connection is closed. */
  get connected(): boolean {
    return !this.#socket.destroyed
  }

  /** Bytes the server sent after the 101 head, frame headers included. */
  get bytesReceived(): number {
    return this.#bytesReceived
  }

  /** Stops reading from TCP: what the server sends piles up in the kernel, then in the server. */
  pause(): void {
    this.#socket.pause()
  }

  /** Reads again after {@link RawPeer.pause} or the `paused` option. */
  resume(): void {
    this.#socket.resume()
  }

  /** Resolves once the bytes written so far left for the kernel (or the connection ended). */
  drained(): Promise<void> {
    if (this.#socket.writableLength === 0 || this.#socket.destroyed) return Promise.resolve()
    return new Promise((resolve) => {
      const done = () => {
        this.#socket.off('drain', done)
        this.#socket.off('close', done)
        resolve()
      }
      this.#socket.once('drain', done)
      this.#socket.once('close', done)
    })
  }

  // --- well-behaved ---

  send(data: string | Uint8Array): void {
    if (typeof data === 'string') {
      this.sendFrame({ opcode: Opcode.Text, payload: new TextEncoder().encode(data) })
    } else {
      this.sendFrame({ opcode: Opcode.Binary, payload: data })
    }
  }

  read(timeoutMs?: number) {
    return this.#inbox.read(timeoutMs)
  }

  close(code?: number, reason = ''): void {
    this.#sentClose = true
    this.sendFrame({ opcode: Opcode.Close, payload: closePayload(code, reason) })
  }

  // --- misbehaving ---

  /** Writes one frame, every field as given (masked unless `mask: false`). */
  sendFrame(frame: FrameSpec): void {
    this.write(encodeFrame({ mask: this.mask, ...frame }))
  }

  /** Writes raw bytes. */
  write(bytes: Uint8Array): boolean {
    if (this.#socket.destroyed) return false
    return this.#socket.write(bytes)
  }

  fault(kind: ProtocolFault): void {
    switch (kind) {
      case 'invalid-utf8':
        // 0xC3 starts a 2-byte sequence; 0x28 cannot continue it.
        this.sendFrame({ opcode: Opcode.Text, payload: new Uint8Array([0x68, 0x69, 0xc3, 0x28]) })
        return
      case 'unmasked':
        this.sendFrame({
          opcode: Opcode.Text,
          payload: new TextEncoder().encode('hi'),
          mask: false,
        })
        return
      case 'bad-opcode':
        // 0x3 is a reserved non-control opcode (RFC 6455 §5.2).
        this.sendFrame({ opcode: 0x3, payload: new TextEncoder().encode('hi') })
        return
    }
  }

  vanishMidMessage(): void {
    const frame = encodeFrame({
      opcode: Opcode.Binary,
      payload: new Uint8Array(1000).fill(7),
      mask: this.mask,
    })
    this.#socket.write(frame.subarray(0, frame.byteLength >> 1), () => this.#socket.destroy())
  }

  vanish(): void {
    this.#socket.destroy()
  }

  // --- reading ---

  #onFrame(frame: Frame): void {
    if (!this.discard || frame.opcode >= Opcode.Close) this.frames.push(frame)
    switch (frame.opcode) {
      case Opcode.Ping:
        if (this.answerPings && !this.#sentClose)
          this.sendFrame({ opcode: Opcode.Pong, payload: frame.payload })
        return
      case Opcode.Pong:
        return
      case Opcode.Close:
        this.#onClose(frame)
        return
      case Opcode.Continuation:
        this.#fragments.push(frame.payload)
        if (frame.fin) this.#deliver(this.#fragmentOpcode, concat(this.#fragments))
        return
      default:
        if (frame.fin) this.#deliver(frame.opcode, frame.payload)
        else {
          this.#fragmentOpcode = frame.opcode
          this.#fragments = [frame.payload]
        }
    }
  }

  #deliver(opcode: number, payload: Uint8Array): void {
    this.#fragments = []
    if (this.discard) return
    this.#inbox.push(
      opcode === Opcode.Text
        ? { type: 'text', data: new TextDecoder().decode(payload) }
        : { type: 'binary', data: payload },
    )
  }

  #onClose(frame: Frame): void {
    if (this.#firstClose) return
    const close = { ...parseClosePayload(frame.payload), at: Date.now() }
    this.#firstClose = close
    this.#settleCloseFrame(close)
    if (this.answerClose && !this.#sentClose) {
      this.#sentClose = true
      // Echo the code, or no code when the server sent none (RFC 6455 §5.5.1).
      this.sendFrame({
        opcode: Opcode.Close,
        payload: frame.payload.byteLength >= 2 ? frame.payload.subarray(0, 2) : new Uint8Array(0),
      })
    }
  }

  #onEnd(): void {
    const at = Date.now()
    const close = this.#firstClose ?? { code: 1006, reason: '' }
    this.#inbox.end(close)
    this.#settleCloseFrame(undefined)
    this.#settleClosed({ code: close.code, reason: close.reason })
    this.#settleEnded(at)
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const total = parts.reduce((sum, part) => sum + part.byteLength, 0)
  const joined = new Uint8Array(total)
  let offset = 0
  for (const part of parts) {
    joined.set(part, offset)
    offset += part.byteLength
  }
  return joined
}
