/**
 * `@handshake/workers`: the Handshake adapter for Cloudflare Workers, on `WebSocketPair`.
 *
 * Importing the package installs the adapter for the isolate; the Worker's entry stays
 * `export default app`:
 *
 * ```ts
 * import '@handshake/workers'
 * import { app } from './app'
 *
 * export default app
 * ```
 *
 * What workerd cannot do, and how the adapter maps it onto the core:
 * - no `terminate()`: at the close-handshake timeout the core settles the connection and drops
 *   the socket (later events are ignored); the TCP connection stays up until the peer or the
 *   platform ends it;
 * - no `bufferedAmount`: it reads 0, so `conn.send()` resolves at once (no outbound back-pressure);
 * - no pause: inbound data beyond `maxInboundBuffer` closes the connection with 1008;
 * - no `ping()`: `conn.canPing` is false;
 * - permessage-deflate is refused by default (`Sec-WebSocket-Extensions: none` on the 101): see
 *   the README's "Compression".
 * @module
 */

import type {
  CloseEvent as WorkersCloseEvent,
  ErrorEvent as WorkersErrorEvent,
  MessageEvent as WorkersMessageEvent,
  WebSocketPair as WorkersWebSocketPair,
} from '@cloudflare/workers-types'
import {
  type Adapter,
  installAdapter,
  type RuntimeSocket,
  type SocketEvents,
  type UpgradeRequest,
} from '@handshake/core'
import type { Context } from 'hono'

// --- types ---

type WebSocketPairConstructor = typeof WorkersWebSocketPair

/** `WebSocket.readyState` values the adapter checks. */
const OPEN = 1
const CLOSED = 3
/** The close codes a peer can report but nobody may send (RFC 6455 §7.4.1). */
const NO_STATUS_RECEIVED = 1005
const ABNORMAL_CLOSURE = 1006
/** How workerd names the close code of a protocol error, e.g. "protocolError.statusCode = 1002". */
const PROTOCOL_ERROR_CODE = /protocolError\.statusCode = (\d{4})/

/**
 * @internal The `Sec-WebSocket-Extensions` of every 101 the adapter makes: no
 * permessage-deflate offer. Given one, workerd negotiates only what it holds with the client's
 * offer, so nothing: it sends no extension header of its own and takes no compressed frame.
 * Without one, workerd accepts the client's permessage-deflate offer as it is, and a 31 KB
 * compressed frame then inflates to 31 MiB before any limit of ours sees it.
 */
export const NO_EXTENSIONS = 'none'

/** @internal The headers of a 101: the core's, the chosen subprotocol, no extension. */
export function switchingHeaders(request: UpgradeRequest): Headers {
  const headers = new Headers(request.headers)
  if (request.protocol !== undefined) headers.set('Sec-WebSocket-Protocol', request.protocol)
  headers.set('Sec-WebSocket-Extensions', NO_EXTENSIONS)
  return headers
}

/** @internal workerd's `WebSocketPair`, or a clear error outside workerd. */
export function webSocketPair(): WebSocketPairConstructor {
  const Pair = (globalThis as { WebSocketPair?: WebSocketPairConstructor }).WebSocketPair
  if (!Pair) {
    throw new Error(
      'WebSocketPair is not defined: @handshake/workers runs on Cloudflare Workers (workerd, wrangler dev or Miniflare) only',
    )
  }
  return Pair
}

/**
 * Keeps the request's I/O context alive until `serve` has finished and the connection is
 * closed: once the request is over, workerd cancels its timers and I/O, and `serve` would stop
 * half-way. The core settles `ended` at the close timeout too, when workerd reports nothing.
 */
function keepAlive(c: Context, ended: Promise<void>): void {
  let ctx: { waitUntil(promise: Promise<unknown>): void }
  try {
    ctx = c.executionCtx
  } catch {
    // Hono throws when `app.fetch` got no ExecutionContext (a test calling `app.request`).
    return
  }
  ctx.waitUntil(ended)
}

/**
 * @internal The close code of a fault workerd reported, read from its message; workerd has
 * then sent its own close frame.
 */
export function faultCode(error: Error): number | undefined {
  const code = PROTOCOL_ERROR_CODE.exec(error.message)?.[1]
  return code === undefined ? undefined : Number(code)
}

/**
 * @internal Answers a peer's close frame with the same code; close(1005) throws, so 1005 gets
 * no code.
 */
export function answerClose(
  server: { close(code?: number, reason?: string): void },
  code: number,
  reason: string,
): void {
  try {
    if (code === NO_STATUS_RECEIVED) server.close()
    else server.close(code, reason)
  } catch {
    try {
      // A code workerd refuses to send back: answer with no code rather than not at all.
      server.close()
    } catch {
      // Already closed: nothing left to answer.
    }
  }
}

// --- adapter ---

function upgrade(c: Context, request: UpgradeRequest): Response {
  const { 0: client, 1: server } = new (webSocketPair())()
  server.accept()
  // From compatibility date 2026-03-17 (websocket_standard_binary_type) binary messages arrive
  // as a Blob by default, which can only be read asynchronously and could reorder messages.
  server.binaryType = 'arraybuffer'

  let closeSent = false
  let dropped = false

  const socket: RuntimeSocket = {
    send(data) {
      // With the automatic close reply, the socket is CLOSED just before its close event, and
      // send() would throw; the core learns of the end from that event, a moment later.
      if (server.readyState !== OPEN) return
      // workerd sends exactly the bytes of an ArrayBufferView, not its whole buffer.
      server.send(data)
    },
    close(code, reason) {
      // Past OPEN the end is already on its way (workerd answered the peer's close frame on its
      // own) and close() would throw, making the core report 1006: the close event that follows
      // reports the peer's code.
      if (server.readyState !== OPEN) return
      closeSent = true
      server.close(code, reason)
    },
    // workerd's WebSocket has no bufferedAmount: send() queues without limit, so the core
    // never waits for a drain. See the README's "Back-pressure".
    bufferedAmount: 0,
    emitsDrain: false,
    // No terminate, pause or ping: workerd has none of them.
  }
  const events: SocketEvents = request.open(socket)

  /** The connection is over for the core: tell it once, and let the request end. */
  const drop = (code: number, reason: string, wasClean: boolean) => {
    if (dropped) return
    dropped = true
    events.closed(code, reason, wasClean)
  }

  server.addEventListener('message', (event: WorkersMessageEvent) => {
    if (dropped) return
    const data = event.data
    events.message(typeof data === 'string' ? data : new Uint8Array(data as ArrayBuffer))
  })

  server.addEventListener('close', (event: WorkersCloseEvent) => {
    // Before compatibility date 2026-04-07 (web_socket_auto_reply_to_close) workerd leaves a
    // peer's close frame unanswered, and the request ends with "code had hung" (honojs/hono#4603).
    if (!closeSent && server.readyState !== CLOSED && event.code !== ABNORMAL_CLOSURE) {
      closeSent = true
      answerClose(server, event.code, event.reason)
    }
    // workerd's wasClean says whether the peer's close frame came.
    drop(event.code, event.reason, event.wasClean)
  })

  server.addEventListener('error', (event: WorkersErrorEvent) => {
    if (dropped) return
    const error =
      event.error instanceof Error ? event.error : new Error(event.message || 'WebSocket error')
    // workerd fires "error", and no close event, when the connection is lost or the peer broke
    // the protocol; it has then sent its own close frame, and names the code only in the message.
    events.error(error, faultCode(error))
    drop(ABNORMAL_CLOSURE, error.message, false)
  })

  keepAlive(c, events.ended)

  return new Response(null, {
    status: 101,
    webSocket: client,
    headers: switchingHeaders(request),
  } as ResponseInit)
}

/**
 * The Cloudflare Workers adapter. Importing `@handshake/workers` installs it for the isolate;
 * pass it in the Hono `env` under `ADAPTER` from `@handshake/core` only to override another one.
 */
export const workersAdapter: Adapter = { name: 'workers', upgrade }

installAdapter(workersAdapter)

export { MAX_ATTACHMENT_BYTES } from '@handshake/core'
export { HandshakeObject, type ObjectNamespace, toObject } from './object.js'
