/**
 * The core's `RuntimeSocket` over a `ws` WebSocket, and the forwarding of its events.
 * @module
 */
import type { Duplex } from 'node:stream'
import {
  ownBytes,
  type RuntimeSocket,
  type SocketEvents,
  type UpgradeRequest,
} from '@handshake/core/adapter'
import type { WebSocket } from 'ws'

// ws marks receiver errors with the close code they call for, under a private symbol
// (`kStatusCode` in ws/lib/constants.js); its `code` string is the fallback.
const CODE_BY_WS_ERROR: Record<string, number> = {
  WS_ERR_INVALID_UTF8: 1007,
  WS_ERR_UNSUPPORTED_MESSAGE_LENGTH: 1009,
  WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH: 1009,
}

/** The close code a `ws` error calls for: 1002, 1007 or 1009; undefined for a network error. */
function closeCodeOf(error: Error): number | undefined {
  for (const symbol of Object.getOwnPropertySymbols(error)) {
    const code = (error as unknown as Record<symbol, unknown>)[symbol]
    if (symbol.description === 'status-code' && typeof code === 'number') return code
  }
  const name = (error as { code?: unknown }).code
  if (typeof name !== 'string' || !name.startsWith('WS_ERR_')) return undefined
  return CODE_BY_WS_ERROR[name] ?? 1002
}

// The connection's socket, on the `ws` WebSocket and on the network socket under it: the
// listeners below are shared by every connection and find their socket there, where a closure
// per listener would cost every idle connection about 600 bytes.
const SOCKET = Symbol('handshake.node.socket')
const socketOf = (emitter: unknown) => (emitter as { [SOCKET]?: WsSocket })[SOCKET]

// The sockets corked in this turn of the event loop, uncorked together by one setImmediate.
let corked: WsSocket[] = []
function uncorkAll(): void {
  const sockets = corked
  corked = []
  for (const socket of sockets) socket.uncork()
}

/** The core's socket over a `ws` WebSocket; a class, so idle connections share its methods. */
class WsSocket implements RuntimeSocket {
  events: SocketEvents | undefined
  #corked = false
  #onSent: (() => void) | undefined
  #pongs = false
  readonly emitsDrain = true

  constructor(
    readonly ws: WebSocket,
    readonly raw: Duplex,
    readonly compressed: boolean,
  ) {}

  get bufferedAmount(): number {
    return this.ws.bufferedAmount
  }

  send(data: string | Uint8Array): boolean | undefined {
    // ws writes a view without copying it, and send() resolves before the network takes it:
    // copy, so that a caller reusing its buffer cannot change a message in flight.
    const payload = typeof data === 'string' ? data : Buffer.from(data)
    if (this.compressed) {
      // With permessage-deflate, ws queues messages while it compresses them, out of the
      // network socket's sight, so its drain can come before that queue empties: each send's
      // callback reports it too.
      this.#onSent ??= () => this.events?.drain()
      this.ws.send(payload, this.#onSent)
      return undefined
    }
    // Sends made in one turn of the event loop leave in one write (writev) instead of a
    // system call each, which is most of the cost of a small message.
    if (!this.#corked) {
      this.#corked = true
      this.raw.cork()
      if (corked.push(this) === 1) setImmediate(uncorkAll)
    }
    this.ws.send(payload)
    // Under the socket's own high-water mark there is no back-pressure to look at.
    return this.raw.writableNeedDrain
  }

  /** @internal Ends this turn's cork. */
  uncork(): void {
    this.#corked = false
    this.raw.uncork()
  }

  close(code: number, reason: string): void {
    this.ws.close(code, reason)
  }

  terminate(): void {
    this.ws.terminate()
  }

  pause(): void {
    this.ws.pause()
  }

  resume(): void {
    this.ws.resume()
  }

  ping(): void {
    // Pongs only matter once a ping was sent: most connections never listen for them.
    if (!this.#pongs) {
      this.#pongs = true
      this.ws.on('pong', onPong)
    }
    this.ws.ping()
  }
}

function onMessage(this: unknown, data: Buffer, isBinary: boolean): void {
  socketOf(this)?.events?.message(isBinary ? ownBytes(data) : data.toString('utf8'))
}
function onPong(this: unknown): void {
  socketOf(this)?.events?.pong()
}
function onError(this: unknown, error: Error): void {
  socketOf(this)?.events?.error(error, closeCodeOf(error))
}
function onDrain(this: unknown): void {
  socketOf(this)?.events?.drain()
}
function onClose(this: unknown, code: number, reason: Buffer): void {
  const socket = socketOf(this)
  socket?.raw.off('drain', onDrain)
  // ws reports 1006 exactly when no close frame came from the peer (a peer cannot send 1006:
  // ws fails such a frame with 1002), so the code says whether one was received.
  socket?.events?.closed(code, reason.toString('utf8'), code !== 1006)
}

/**
 * Opens the core's side of an upgraded `ws` socket and forwards its events.
 * @param ws - the socket `handleUpgrade` made
 * @param raw - the network socket under it, for its drain events
 * @param request - the core's upgrade request, whose `open` is called here, exactly once
 */
export function openConnection(ws: WebSocket, raw: Duplex, request: UpgradeRequest): void {
  const socket = new WsSocket(ws, raw, ws.extensions.includes('permessage-deflate'))
  socket.events = request.open(socket)
  ;(ws as { [SOCKET]?: WsSocket })[SOCKET] = socket
  ;(raw as { [SOCKET]?: WsSocket })[SOCKET] = socket
  ws.on('message', onMessage)
  // Without this listener, the first bad frame would throw from an EventEmitter and crash the
  // process; ws sends the close frame for the fault itself.
  ws.on('error', onError)
  raw.on('drain', onDrain)
  ws.on('close', onClose)
}
