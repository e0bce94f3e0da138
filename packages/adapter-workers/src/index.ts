/**
 * `@handshake/workers`: the Handshake adapter for Cloudflare Workers, on `WebSocketPair`.
 * Importing the package installs the adapter for the isolate; the Worker's entry stays
 * `export default app` (after `import '@handshake/workers'`).
 *
 * A plain Worker's connections, and its routes, share the isolate's default {@link hub}; but a
 * socket belongs to the request that opened it, so topics that fan out between sockets need a
 * Durable Object ({@link HandshakeObject}), which is a hub of its own.
 *
 * workerd has no `terminate()`, `bufferedAmount` (no outbound back-pressure), pause or `ping()`;
 * the README's "Differences from Node" says how each maps onto the core. permessage-deflate is
 * refused by default: see its "Compression".
 * @module
 */
import type { Hub } from '@handshake/core'
import {
  type AcceptedSocket,
  type Adapter,
  createHub,
  installAdapter,
  keepAlive,
  serveAccepted,
} from '@handshake/core/adapter'
import { faultCode, switching, webSocketPair } from './shared.js'

/**
 * The isolate's default hub: that of a plain Worker's requests and connections. Each
 * {@link HandshakeObject} is a hub of its own.
 */
export const hub: Hub = createHub()

/**
 * The Cloudflare Workers adapter. Importing `@handshake/workers` installs it for the isolate;
 * apps never need it directly.
 */
export const adapter: Adapter = {
  name: 'workers',
  hub: () => hub,
  upgrade(c, request) {
    const { 0: client, 1: server } = webSocketPair()
    server.accept()
    // From compatibility date 2026-03-17 (websocket_standard_binary_type) binary messages arrive
    // as a Blob by default, which can only be read asynchronously and could reorder messages.
    server.binaryType = 'arraybuffer'
    // Before compatibility date 2026-04-07 (web_socket_auto_reply_to_close) workerd leaves a
    // peer's close frame unanswered (honojs/hono#4603): the core answers it. workerd fires
    // "error", and no close event, when the connection is lost or the peer broke the protocol.
    const events = serveAccepted(server as unknown as AcceptedSocket, request, faultCode)
    // Once the request is over, workerd cancels its timers and I/O: `serve` would stop half-way.
    keepAlive(c, events.ended)
    return switching(client, request)
  },
}

installAdapter(adapter)

export { MAX_ATTACHMENT_BYTES } from '@handshake/core/adapter'
export { HandshakeObject, type ObjectNamespace, toObject } from './object.js'
