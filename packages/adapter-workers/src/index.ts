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
 * A plain Worker's connections, and its routes, share the isolate's default {@link hub}; but a
 * socket belongs to the request that opened it, so topics that fan out between sockets need a
 * Durable Object ({@link HandshakeObject}), which is a hub of its own.
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
} from '@cloudflare/workers-types'
import type { Hub } from '@handshake/core'
import {
  type Adapter,
  createHub,
  installAdapter,
  type RuntimeSocket,
  type SocketEvents,
  type UpgradeRequest,
} from '@handshake/core/adapter'
import type { Context } from 'hono'
import {
  ABNORMAL_CLOSURE,
  answerClose,
  CLOSED,
  faultCode,
  keepAlive,
  OPEN,
  switchingHeaders,
  webSocketPair,
} from './shared.js'

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
 * The isolate's default hub: that of a plain Worker's requests and connections. Each
 * {@link HandshakeObject} is a hub of its own.
 */
export const hub: Hub = createHub()

/**
 * The Cloudflare Workers adapter. Importing `@handshake/workers` installs it for the isolate;
 * apps never need it directly.
 */
export const adapter: Adapter = { name: 'workers', upgrade, hub: () => hub }

installAdapter(adapter)

export { MAX_ATTACHMENT_BYTES } from '@handshake/core/adapter'
export { HandshakeObject, type ObjectNamespace, toObject } from './object.js'
