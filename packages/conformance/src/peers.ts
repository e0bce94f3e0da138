/**
 * The peers the suite drives, over one small interface: {@link Peer} for a well-behaved client
 * (a `ws` client, undici's `WebSocket`, the test kit's peer) and {@link ControlledPeer} for one
 * that can misbehave (the raw TCP peer, the test kit's peer).
 * @module
 */
import { WebSocket as UndiciWebSocket } from 'undici'
import WebSocket from 'ws'

// --- the interface ---

/** A message the peer received. */
export type PeerMessage =
  | { readonly type: 'text'; readonly data: string }
  | { readonly type: 'binary'; readonly data: Uint8Array }

/** A close as the peer saw it: the server's close frame (1005 when it had no code), or 1006. */
export interface PeerClose {
  readonly code: number
  readonly reason: string
}

/** The clients the suite can connect with. */
export type ClientKind = 'ws' | 'undici' | 'raw' | 'memory'

/** The options of a connection. */
export interface DialOptions {
  /** Subprotocols the peer offers. */
  protocols?: readonly string[]
  /** Extra headers of the upgrade request (undici's `WebSocket` sends them too). */
  headers?: Record<string, string>
  /** Whether the peer answers the server's close frame (controlled peers only). @defaultValue true */
  answerClose?: boolean
  /**
   * The test kit only: its runtime reports the end inside the server's `close()`, as Bun does
   * (see the kit's `ConnectOptions.endsInClose`).
   */
  endsInClose?: boolean
}

/** A well-behaved WebSocket client. */
export interface Peer {
  /** Which client this is. */
  readonly client: ClientKind
  /** The subprotocol the server chose, `''` when none. */
  readonly protocol: string
  /** The headers of the 101 response; undefined where the client does not expose them. */
  readonly headers: Headers | undefined
  /** Sends a message: a string as text, bytes as binary. */
  send(data: string | Uint8Array): void
  /** Bytes sent but not yet taken by the transport: how a sender feels backpressure. */
  readonly bufferedAmount: number
  /**
   * The next message. Rejects with {@link PeerClosedError} once the connection ended and every
   * message was read, and with an `Error` when nothing arrives within `timeoutMs`.
   */
  read(timeoutMs?: number): Promise<PeerMessage>
  /** Starts the close handshake; without `code` the close frame carries no code. */
  close(code?: number, reason?: string): void
  /** Resolves once the connection ended, with the close the peer saw. */
  readonly closed: Promise<PeerClose>
  /** Drops the connection with no close frame. */
  vanish(): void
}

/** The protocol faults a controlled peer can commit. */
export type ProtocolFault = 'invalid-utf8' | 'unmasked' | 'bad-opcode'

/** The close code each {@link ProtocolFault} calls for (RFC 6455 §7.4.1). */
export const faultCode: Readonly<Record<ProtocolFault, number>> = {
  'invalid-utf8': 1007,
  unmasked: 1002,
  'bad-opcode': 1002,
}

/** A close frame the peer received, with the time it arrived (`Date.now()`). */
export interface ReceivedClose extends PeerClose {
  readonly at: number
}

/** A peer that can break the rules. */
export interface ControlledPeer extends Peer {
  /** Whether the peer answers the server's close frame. Set false to never answer. */
  answerClose: boolean
  /** Commits a protocol fault (on the wire, or as the test kit's runtime would report it). */
  fault(kind: ProtocolFault): void
  /** Sends the first half of a message, then vanishes. */
  vanishMidMessage(): void
  /** The first close frame the server sent; undefined when the connection ended without one. */
  readonly closeFrame: Promise<ReceivedClose | undefined>
  /** Resolves with the time (`Date.now()`) the connection was torn down. */
  readonly ended: Promise<number>
  /**
   * How many close frames the server sent so far, where the peer can count them (undefined
   * otherwise).
   */
  readonly closeFramesReceived: number | undefined
}

/** The connection ended: what {@link Peer.read} rejects with once every message was read. */
export class PeerClosedError extends Error {
  override readonly name = 'PeerClosedError'
  constructor(
    readonly code: number,
    readonly reason: string,
  ) {
    super(`The connection closed with ${code}${reason ? `: ${reason}` : ''}`)
  }
}

/** The server refused the upgrade: its whole answer. */
export class PeerUpgradeRejected extends Error {
  override readonly name = 'PeerUpgradeRejected'
  constructor(
    readonly status: number,
    readonly headers: Headers,
    readonly body: string,
  ) {
    super(`The server refused the upgrade with ${status}: ${body}`)
  }
}

/** How long {@link Peer.read} waits by default before it fails the test. */
export const READ_TIMEOUT_MS = 5000

/** Messages that arrived before anyone read them, and the end. Shared by the peers. */
export class Inbox {
  #messages: PeerMessage[] = []
  #reader: { resolve(message: PeerMessage): void; reject(err: unknown): void } | undefined
  #end: PeerClosedError | undefined

  /** A message arrived. */
  push(message: PeerMessage): void {
    if (this.#end) return
    const reader = this.#reader
    this.#reader = undefined
    if (reader) reader.resolve(message)
    else this.#messages.push(message)
  }

  /** The connection ended. */
  end(close: PeerClose): void {
    if (this.#end) return
    this.#end = new PeerClosedError(close.code, close.reason)
    const reader = this.#reader
    this.#reader = undefined
    reader?.reject(this.#end)
  }

  /** The next message; see {@link Peer.read}. */
  read(timeoutMs = READ_TIMEOUT_MS): Promise<PeerMessage> {
    const message = this.#messages.shift()
    if (message) return Promise.resolve(message)
    if (this.#end) return Promise.reject(this.#end)
    if (this.#reader) return Promise.reject(new Error('Only one read at a time'))
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#reader = undefined
        reject(new Error(`No message within ${timeoutMs} ms`))
      }, timeoutMs)
      this.#reader = {
        resolve: (value) => {
          clearTimeout(timer)
          resolve(value)
        },
        reject: (err) => {
          clearTimeout(timer)
          reject(err)
        },
      }
    })
  }
}

function toWsUrl(baseUrl: string, path: string): string {
  // Appended, not resolved: a base may carry a path of its own (a Durable Object's prefix).
  const url = new URL(`${baseUrl.replace(/\/$/, '')}${path}`)
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:'
  return url.href
}

// --- the ws client ---

/** Connects with a `ws` client. Rejects with {@link PeerUpgradeRejected} when refused. */
export function connectWs(baseUrl: string, path: string, options: DialOptions = {}): Promise<Peer> {
  const ws = new WebSocket(toWsUrl(baseUrl, path), [...(options.protocols ?? [])], {
    headers: options.headers,
  })
  const inbox = new Inbox()
  let headers: Headers | undefined
  const closed = new Promise<PeerClose>((resolve) => {
    ws.on('close', (code, reason) => {
      const close = { code, reason: reason.toString() }
      inbox.end(close)
      resolve(close)
    })
  })
  ws.on('upgrade', (response) => {
    headers = new Headers()
    for (const [name, value] of Object.entries(response.headers)) {
      if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value)
    }
  })
  ws.on('message', (data, isBinary) => {
    const bytes = Array.isArray(data)
      ? Buffer.concat(data)
      : Buffer.isBuffer(data)
        ? data
        : Buffer.from(data)
    inbox.push(
      isBinary
        ? { type: 'binary', data: new Uint8Array(bytes) }
        : { type: 'text', data: bytes.toString('utf8') },
    )
  })
  return new Promise((resolve, reject) => {
    ws.once('unexpected-response', (_request, response) => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => chunks.push(chunk))
      response.on('end', () => {
        const responseHeaders = new Headers()
        for (const [name, value] of Object.entries(response.headers)) {
          if (value !== undefined) {
            responseHeaders.set(name, Array.isArray(value) ? value.join(', ') : value)
          }
        }
        reject(
          new PeerUpgradeRejected(
            response.statusCode ?? 0,
            responseHeaders,
            Buffer.concat(chunks).toString('utf8'),
          ),
        )
        ws.terminate()
      })
    })
    ws.once('open', () => {
      // Errors after the open (a reset, a protocol fault) end in 'close'; they must not throw.
      ws.on('error', () => {})
      resolve({
        client: 'ws',
        protocol: ws.protocol,
        get headers() {
          return headers
        },
        get bufferedAmount() {
          return ws.bufferedAmount
        },
        send: (data) => ws.send(data),
        read: (timeoutMs) => inbox.read(timeoutMs),
        close: (code, reason) => ws.close(code, reason),
        closed,
        vanish: () => ws.terminate(),
      })
    })
    ws.once('error', reject)
  })
}

// --- undici's WebSocket, a browser's API ---

/** Connects with undici's `WebSocket` (the WHATWG API browsers have). */
export function connectUndici(
  baseUrl: string,
  path: string,
  options: DialOptions = {},
): Promise<Peer> {
  const ws = new UndiciWebSocket(toWsUrl(baseUrl, path), {
    protocols: [...(options.protocols ?? [])],
    headers: options.headers,
  })
  ws.binaryType = 'arraybuffer'
  const inbox = new Inbox()
  const closed = new Promise<PeerClose>((resolve) => {
    ws.addEventListener('close', (event) => {
      const close = { code: event.code, reason: event.reason }
      inbox.end(close)
      resolve(close)
    })
  })
  ws.addEventListener('message', (event) => {
    const data: unknown = event.data
    inbox.push(
      typeof data === 'string'
        ? { type: 'text', data }
        : { type: 'binary', data: new Uint8Array(data as ArrayBuffer) },
    )
  })
  return new Promise((resolve, reject) => {
    const onError = () => reject(new Error(`undici WebSocket could not connect to ${path}`))
    ws.addEventListener('error', onError, { once: true })
    ws.addEventListener(
      'open',
      () => {
        ws.removeEventListener('error', onError)
        resolve({
          client: 'undici',
          protocol: ws.protocol,
          headers: undefined,
          get bufferedAmount() {
            return ws.bufferedAmount
          },
          send: (data) => ws.send(data),
          read: (timeoutMs) => inbox.read(timeoutMs),
          close: (code, reason) => ws.close(code, reason),
          closed,
          // The WHATWG API has no way to drop a connection: close as abruptly as it allows.
          vanish: () => ws.close(),
        })
      },
      { once: true },
    )
  })
}
