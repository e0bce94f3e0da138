/**
 * What the plain Worker's adapter and the Durable Object share: workerd's constants, its
 * `WebSocketPair`, and the answers to what workerd leaves undone. Internal to the package.
 * @module
 */
import type { WebSocketPair as WorkersWebSocketPair } from '@cloudflare/workers-types'
import { handshakeHeaders, type UpgradeRequest } from '@handshake/core/adapter'
import type { Context } from 'hono'

type WebSocketPairConstructor = typeof WorkersWebSocketPair

/** `WebSocket.readyState` values the adapter checks. */
export const OPEN = 1
export const CLOSED = 3
/** The close codes a peer can report but nobody may send (RFC 6455 §7.4.1). */
const NO_STATUS_RECEIVED = 1005
export const ABNORMAL_CLOSURE = 1006
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
  const headers = handshakeHeaders(request)
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
export function keepAlive(c: Context, ended: Promise<void>): void {
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
