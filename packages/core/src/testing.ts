/**
 * The test kit: runs a controller against an in-memory peer, with no network, on any runtime.
 *
 * ```ts
 * import { connect } from '@handshake/core/testing'
 *
 * const peer = await connect(new Echo())
 * peer.send('hi')
 * expect(await peer.read()).toEqual({ type: 'text', data: 'hi' })
 * peer.close(1000)
 * expect(await peer.closed).toMatchObject({ code: 1000, wasClean: true })
 * ```
 * @module
 */
import { Hono } from 'hono'
import { CloseCode, type CloseError, closeErrorOf } from './close.js'
import type { ControllerWithHooks, Message, MessageData } from './contracts.js'
import { ADAPTER, type Adapter, type RuntimeSocket, type SocketEvents } from './port.js'
import { upgrade } from './upgrade.js'

/** A close frame: its code (1005 when it had none) and reason. */
export interface CloseFrame {
  readonly code: number
  readonly reason: string
}

/** How a connection ended, as the peer saw it, like a browser's `CloseEvent`. */
export interface CloseResult extends CloseFrame {
  /** True when both close frames were exchanged before the connection ended. */
  readonly wasClean: boolean
}

/** Options of {@link connect}. */
export interface ConnectOptions {
  /** Headers of the upgrade request, added to the valid handshake headers the kit sends. */
  headers?: HeadersInit
  /** Subprotocols the peer offers, sent in `Sec-WebSocket-Protocol`. */
  protocols?: readonly string[]
  /** A Hono `env` for the request (bindings); the kit adds its adapter to it. */
  env?: object
  /**
   * Whether the peer answers the server's close frame; false acts as a peer that never answers.
   * Set it here when `serve` may close at once; later, set {@link TestPeer.answerClose}.
   * @defaultValue true
   */
  answerClose?: boolean
}

/** Thrown by {@link connect} when the server refuses the upgrade. */
export class UpgradeRejectedError extends Error {
  override readonly name = 'UpgradeRejectedError'
  /** @param response - the whole rejection: status, headers and body */
  constructor(readonly response: Response) {
    super(`The server refused the upgrade with ${response.status}`)
  }
}

const byteLength = (data: MessageData) =>
  typeof data === 'string' ? new TextEncoder().encode(data).byteLength : data.byteLength

/**
 * The peer's end of an in-memory connection. It behaves like a well-behaved client (it answers
 * the server's close frame and pings) unless told to misbehave.
 */
export class TestPeer {
  /**
   * The 101 response as the app finished it: the `upgradeHeaders`, `Sec-WebSocket-Protocol`,
   * and whatever headers middleware added.
   */
  response: Response
  /** The subprotocol the server chose, or `''`. */
  readonly protocol: string
  /**
   * The first close frame the server sent. It never settles when the connection ends without
   * one (a teardown, a vanished peer): race it with {@link TestPeer.closed}.
   */
  readonly closeFrame: Promise<CloseFrame>
  /**
   * Every close frame the server sent, in order, whether the core wrote it or the runtime
   * answered the peer's close by itself: a correct server sends exactly one.
   */
  readonly closeFrames: CloseFrame[] = []
  /** How the connection ended, from the peer's side. */
  readonly closed: Promise<CloseResult>
  /**
   * Whether the peer answers the server's close frame. Set it to false to act as a peer that
   * never answers, so the server's close-handshake timeout runs out.
   */
  answerClose = true
  /** How many pings the server sent. The peer answers each with a pong. */
  pings = 0
  /** True once the server tore the connection down without finishing the handshake. */
  terminated = false

  #server: SocketEvents | undefined
  #inbox: Message[] = []
  #reader: { resolve(message: Message): void; reject(err: unknown): void } | undefined
  #inFlight: { data: MessageData; size: number }[] = []
  #inFlightBytes = 0
  #reading = true
  #outbox: MessageData[] = []
  #serverPaused = false
  #sentClose: CloseFrame | undefined
  #receivedClose: CloseFrame | undefined
  #ended: CloseResult | undefined
  #settleCloseFrame!: (frame: CloseFrame) => void
  #settleClosed!: (result: CloseResult) => void

  /** @internal Made by {@link connect}. */
  constructor(response: Response, protocol: string) {
    this.response = response
    this.protocol = protocol
    this.closeFrame = new Promise((resolve) => {
      this.#settleCloseFrame = resolve
    })
    this.closed = new Promise((resolve) => {
      this.#settleClosed = resolve
    })
  }

  /** Sends a message to the server. Held while the server has paused reading. */
  send(data: MessageData): void {
    if (this.#sentClose || this.#ended) throw new Error('The peer has closed: it cannot send')
    // Held while the server is paused, and behind what is still held, to keep the order.
    if (this.#serverPaused || this.#outbox.length > 0) {
      this.#outbox.push(data)
      return
    }
    this.#deliver(() => this.#server?.message(data))
  }

  /** Bytes the peer could not deliver yet because the server paused reading. */
  get pendingBytes(): number {
    return this.#outbox.reduce((sum, data) => sum + byteLength(data), 0)
  }

  /**
   * The next message from the server. Once the connection has ended and every message was read,
   * it rejects with a {@link CloseError} holding the close frame the server sent.
   */
  read(): Promise<Message> {
    const message = this.#inbox.shift()
    if (message) return Promise.resolve(message)
    if (this.#ended) return Promise.reject(this.#endError())
    return new Promise((resolve, reject) => {
      this.#reader = { resolve, reject }
    })
  }

  /**
   * Starts the close handshake from the peer's side. The in-memory runtime answers it with the
   * same code, as `ws`, Bun and Deno do. Without `code`, the frame has no code (the server sees
   * 1005).
   */
  close(code?: number, reason = ''): void {
    if (this.#sentClose || this.#ended) return
    this.#sentClose = { code: code ?? CloseCode.NoStatusReceived, reason }
    const frame = this.#sentClose
    this.#deliver(() => {
      if (this.#ended) return
      // The runtime answers a peer's close frame at once, then reports the end.
      this.#runtimeAnswers(frame)
      this.#end(frame, true)
    })
  }

  /** The peer disappears: no close frame, the connection just ends (the server sees 1006). */
  vanish(): void {
    this.#deliver(() => this.#end({ code: CloseCode.AbnormalClosure, reason: '' }, false))
  }

  /**
   * The runtime reports a protocol fault of this peer (1002 for a protocol error, 1007 for
   * invalid UTF-8), answers it with a close frame of that code, and the connection ends.
   */
  fault(code: number, message: string): void {
    this.#deliver(() => {
      if (this.#ended) return
      this.#server?.error(new Error(message), code)
      this.#runtimeAnswers({ code, reason: message })
      this.#end({ code: CloseCode.AbnormalClosure, reason: '' }, false)
    })
  }

  /** Stops taking the server's messages: they stay in flight and count in its `bufferedAmount`. */
  stopReading(): void {
    this.#reading = false
  }

  /** Takes the in-flight messages and lets the server's buffer drain. */
  startReading(): void {
    this.#reading = true
    const messages = this.#inFlight
    this.#inFlight = []
    this.#inFlightBytes = 0
    for (const { data } of messages) this.#take(data)
    this.#deliver(() => this.#server?.drain())
  }

  // --- the server's side, driven by the in-memory socket ---

  /** @internal */
  attach(events: SocketEvents): void {
    this.#server = events
  }

  /** @internal The server's end of the connection. */
  readonly socket: RuntimeSocket = this.#serverSocket()

  #serverSocket(): RuntimeSocket {
    const peer = this
    return {
      emitsDrain: true,
      send: (data) => {
        if (this.#ended || this.#receivedClose) return
        // Copy, like a network would: the sender may reuse its buffer.
        const copy = typeof data === 'string' ? data : data.slice()
        if (this.#reading) this.#take(copy)
        else {
          const size = byteLength(copy)
          this.#inFlight.push({ data: copy, size })
          this.#inFlightBytes += size
        }
      },
      get bufferedAmount() {
        return peer.#inFlightBytes
      },
      close: (code, reason) => {
        if (this.#ended) return
        this.closeFrames.push({ code, reason })
        if (this.#receivedClose) return
        this.#receiveClose({ code, reason })
        if (!this.answerClose) return
        this.#deliver(() => {
          if (this.#ended) return
          this.#sentClose ??= { code, reason }
          this.#end({ code, reason }, true)
        })
      },
      terminate: () => {
        if (this.#ended) return
        this.terminated = true
        this.#end({ code: CloseCode.AbnormalClosure, reason: '' }, false)
      },
      pause: () => {
        this.#serverPaused = true
      },
      resume: () => {
        this.#serverPaused = false
        this.#deliver(() => this.#flushOutbox())
      },
      ping: () => {
        this.pings++
        this.#deliver(() => this.#server?.pong())
      },
    }
  }

  /** Delivers held messages one at a time, stopping as soon as the server pauses again. */
  #flushOutbox(): void {
    while (!this.#serverPaused && !this.#ended && this.#outbox.length > 0) {
      this.#server?.message(this.#outbox.shift() as MessageData)
    }
  }

  #take(data: MessageData): void {
    const message: Message =
      typeof data === 'string' ? { type: 'text', data } : { type: 'binary', data }
    const reader = this.#reader
    if (reader) {
      this.#reader = undefined
      reader.resolve(message)
    } else {
      this.#inbox.push(message)
    }
  }

  /** The server's runtime writes a close frame by itself (an answer, or a fault's close). */
  #runtimeAnswers(frame: CloseFrame): void {
    // Like ws: a runtime that already sent its close frame sends no second one.
    if (this.#receivedClose) return
    this.closeFrames.push(frame)
    this.#receiveClose(frame)
  }

  #receiveClose(frame: CloseFrame): void {
    if (this.#receivedClose) return
    this.#receivedClose = frame
    this.#settleCloseFrame(frame)
  }

  /** Ends the connection on both sides: the server hears `serverSees`, the peer keeps its view. */
  #end(serverSees: CloseFrame, clean: boolean): void {
    if (this.#ended) return
    const received = this.#receivedClose
    this.#ended = {
      code: received?.code ?? CloseCode.AbnormalClosure,
      reason: received?.reason ?? '',
      wasClean: clean && received !== undefined,
    }
    this.#settleClosed(this.#ended)
    const reader = this.#reader
    this.#reader = undefined
    reader?.reject(this.#endError())
    this.#server?.closed(serverSees.code, serverSees.reason)
  }

  #endError(): CloseError {
    const { code, reason, wasClean } = this.#ended as CloseResult
    return closeErrorOf(code, reason, wasClean)
  }

  /** Delivers in order, after the current call stack, as a network would. */
  #deliver(action: () => void): void {
    queueMicrotask(action)
  }
}

function isController(target: object): target is ControllerWithHooks {
  return typeof (target as ControllerWithHooks).serve === 'function'
}

/**
 * Opens an in-memory connection to a Hono app (at `path`) or to a bare controller (mounted on
 * `path` of a new app), through the whole upgrade pipeline: validation, origin check, hooks and
 * subprotocol choice all run as they would on a server.
 *
 * @param target - a Hono app that routes `path` to `upgrade()`, or a controller
 * @param path - the request path, `/` by default
 * @param options - headers, subprotocols and env of the upgrade request
 * @returns the peer, once the server has answered 101 and the connection is open
 * @throws UpgradeRejectedError when the server answers anything else, with that response
 */
export async function connect(
  target: { request: Hono['request'] } | ControllerWithHooks,
  path = '/',
  options: ConnectOptions = {},
): Promise<TestPeer> {
  let app: { request: Hono['request'] }
  if (isController(target)) {
    app = new Hono().get(path, upgrade(target))
  } else {
    app = target
  }
  const headers = new Headers({
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
    Host: 'localhost',
  })
  for (const [name, value] of new Headers(options.headers)) headers.set(name, value)
  if (options.protocols?.length) headers.set('Sec-WebSocket-Protocol', options.protocols.join(', '))

  let peer: TestPeer | undefined
  const adapter: Adapter = {
    name: 'memory',
    upgrade(_c, request) {
      const responseHeaders = new Headers(request.headers)
      if (request.protocol) responseHeaders.set('Sec-WebSocket-Protocol', request.protocol)
      // Response() refuses status 101 outside a server runtime, and middleware may copy the
      // response: the app sees a 200 carrying the 101's headers, as on Node.
      const response = new Response(null, { status: 200, headers: responseHeaders })
      const opened = new TestPeer(response, request.protocol ?? '')
      opened.answerClose = options.answerClose ?? true
      opened.attach(request.open(opened.socket))
      peer = opened
      return response
    },
  }
  const response = await app.request(
    `http://localhost${path}`,
    { headers },
    { ...options.env, [ADAPTER]: adapter },
  )
  if (!peer || response.status !== 200) throw new UpgradeRejectedError(response)
  // What the client would see: the app's final headers on a 101.
  const switched = new Response(null, { headers: response.headers })
  Object.defineProperty(switched, 'status', { value: 101 })
  Object.defineProperty(switched, 'statusText', { value: 'Switching Protocols' })
  peer.response = switched
  return peer
}
