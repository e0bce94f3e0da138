/**
 * What the plain Worker's adapter and the Durable Object share: workerd's globals, the 101 that
 * hands the client its end, and how workerd names a fault's code. Internal.
 * @module
 */
import type { WebSocketPair as WorkersWebSocketPair } from '@cloudflare/workers-types'
import { handshakeHeaders, type UpgradeRequest } from '@handshake/core/adapter'

type Pair = InstanceType<typeof WorkersWebSocketPair>

/** How workerd names the close code of a protocol error: "protocolError.statusCode = 1002". */
const PROTOCOL_ERROR_CODE = /protocolError\.statusCode = (\d{4})/

/** A class that only workerd defines as a global: a clear error outside workerd. */
export function workerdGlobal<T>(name: 'WebSocketPair' | 'WebSocketRequestResponsePair'): T {
  const found = (globalThis as Record<string, unknown>)[name]
  if (found) return found as T
  throw new Error(
    `${name} is not defined: @handshake/workers runs on Cloudflare Workers (workerd, wrangler dev or Miniflare) only`,
  )
}

/** A new `WebSocketPair`: `[client, server]`. */
export const webSocketPair = (): Pair =>
  new (workerdGlobal<typeof WorkersWebSocketPair>('WebSocketPair'))()

/**
 * The 101 that hands the client its end: the core's headers, and `Sec-WebSocket-Extensions:
 * none`. Given an offer of its own, workerd negotiates only what it holds with the client's, so
 * nothing: no permessage-deflate. Without one, it accepts the client's offer as it is, and a
 * 31 KB compressed frame would inflate to 31 MiB before any limit of ours saw it.
 */
export function switching(client: Pair[0], request: UpgradeRequest): Response {
  const headers = handshakeHeaders(request)
  headers.set('Sec-WebSocket-Extensions', 'none')
  return new Response(null, { status: 101, webSocket: client, headers } as ResponseInit)
}

/** The close code of a fault workerd reported, read from its message (it sent its own close). */
export function faultCode(error: Error): number | undefined {
  const code = PROTOCOL_ERROR_CODE.exec(error.message)?.[1]
  return code === undefined ? undefined : Number(code)
}
