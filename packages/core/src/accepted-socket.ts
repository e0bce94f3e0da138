/**
 * A server-side WHATWG `WebSocket` that the runtime hands over accepted and dispatches events on
 * (the server's end of workerd's socket pair), served by the core: its `RuntimeSocket`, its
 * events mapped onto the connection's, the answer to a peer's close frame, and the request kept
 * alive until the connection has ended. Runtime-free: an adapter creates and accepts the socket, and says
 * how its runtime names the code of a fault.
 * @module
 */
import type { Context } from 'hono'
import { CloseCode } from './close.js'
import type { RuntimeSocket, SocketEvents, UpgradeRequest } from './port.js'

/** The `readyState` values of a WHATWG `WebSocket`. */
export const ReadyState = { Connecting: 0, Open: 1, Closing: 2, Closed: 3 } as const

/** A WHATWG `WebSocket`, as far as the core sends and closes on it. */
export interface WebSocketLike {
  /** One of {@link ReadyState}. */
  readonly readyState: number
  /** Sends a message. */
  send(data: string | ArrayBuffer | ArrayBufferView): void
  /** Sends a close frame. */
  close(code?: number, reason?: string): void
}

/** A server-side WHATWG `WebSocket` whose events the runtime dispatches. */
export interface AcceptedSocket extends WebSocketLike {
  /** Listens to `message`, `close` and `error`. */
  addEventListener(type: 'message' | 'close' | 'error', listener: (event: never) => void): void
}

/**
 * Answers a peer's close frame with the same code and reason. 1005 ("no status") may not be
 * sent, so it is answered with no code; a code the runtime refuses to send back, with no code;
 * a socket already closed, with nothing.
 */
export function answerClose(ws: WebSocketLike, code: number, reason: string): void {
  try {
    if (code === CloseCode.NoStatusReceived) ws.close()
    else ws.close(code, reason)
  } catch {
    try {
      ws.close()
    } catch {
      // Already closed: nothing left to answer.
    }
  }
}

/**
 * Serves an accepted socket: maps its events onto the connection the core opens for `request`.
 * - `send` and `close` act only while the socket is open: past that, the end is on its way (the
 *   runtime answered the peer's close frame itself) and the event that follows reports it;
 * - a peer's close frame that the runtime left unanswered is answered with its own code;
 * - an `error` event, which such a runtime fires instead of `close` when the connection is lost
 *   or the peer broke the protocol, ends the connection as abnormal (1006), the fault reported
 *   with the code `faultCode` reads from it.
 * No `bufferedAmount` (it reads 0: no back-pressure), pause, ping or terminate.
 * @returns the connection's events; its `ended` settles once the connection is over
 */
export function serveAccepted(
  ws: AcceptedSocket,
  request: UpgradeRequest,
  faultCode: (error: Error) => number | undefined,
): SocketEvents {
  let closeSent = false
  let dropped = false
  const socket: RuntimeSocket = {
    send(data) {
      if (ws.readyState === ReadyState.Open) ws.send(data)
    },
    close(code, reason) {
      if (ws.readyState !== ReadyState.Open) return
      closeSent = true
      ws.close(code, reason)
    },
    bufferedAmount: 0,
    emitsDrain: false,
  }
  const events = request.open(socket)
  const drop = (code: number, reason: string, wasClean: boolean) => {
    if (dropped) return
    dropped = true
    events.closed(code, reason, wasClean)
  }
  ws.addEventListener('message', (event: MessageEvent<string | ArrayBuffer>) => {
    if (dropped) return
    const data = event.data
    events.message(typeof data === 'string' ? data : new Uint8Array(data))
  })
  ws.addEventListener('close', (event: CloseEvent) => {
    const { code, reason } = event
    if (!closeSent && ws.readyState !== ReadyState.Closed && code !== CloseCode.AbnormalClosure) {
      closeSent = true
      answerClose(ws, code, reason)
    }
    drop(code, reason, event.wasClean)
  })
  ws.addEventListener('error', (event: ErrorEvent) => {
    if (dropped) return
    const error =
      event.error instanceof Error ? event.error : new Error(event.message || 'WebSocket error')
    events.error(error, faultCode(error))
    drop(CloseCode.AbnormalClosure, error.message, false)
  })
  return events
}

/**
 * Keeps the request's I/O context alive until the connection has ended (`ended`), where the
 * runtime cancels a request's timers and I/O once its response is out (workerd): `serve` would
 * stop half-way. Nothing when the app was called without an execution context (`app.request`).
 */
export function keepAlive(c: Context, ended: Promise<void>): void {
  let ctx: { waitUntil(promise: Promise<unknown>): void }
  try {
    ctx = c.executionCtx
  } catch {
    // Hono throws when `app.fetch` got no ExecutionContext.
    return
  }
  ctx.waitUntil(ended)
}
