/**
 * How an event controller's handlers are called on a connection: one at a time, in order. A
 * message that arrives while a handler runs (or before `open` settles) waits in the inbox; the
 * `close` handler runs once, after the last of them. A handler that fails stops the dispatch:
 * no more messages reach the controller while the failure is reported and the connection closes.
 * @internal
 * @module
 */
import type { CloseEnd } from './close.js'
import type { Conn } from './conn.js'
import {
  BUSY,
  CLOSE_ERROR,
  CLOSE_OWED,
  DISPATCH,
  DISPATCH_STOPPED,
  ENDED_SETTLED,
  HOME,
  INBOX,
  RESOLVE_ENDED,
  resolved,
  STATE,
  WHEN_ENDED,
} from './conn-fields.js'
import type { Message } from './contracts.js'
import { dropInbox, NO_MESSAGES, shift } from './inbound.js'
import { ENDED } from './internal.js'

/**
 * How an event controller's handlers are called. Made by the upgrader.
 * @internal
 */
export interface EventDispatch {
  message(conn: Conn, message: Message): unknown
  /** A handler threw or rejected. */
  fail(conn: Conn, error: unknown): void
  /** The connection closed and no handler is running: called once. */
  closed(conn: Conn, end: CloseEnd): void
}

/**
 * Turns a connection into an event controller's: messages go to `dispatch` instead of `read()`.
 * It starts busy, until `open` settles.
 */
export function dispatchTo(conn: Conn, dispatch: EventDispatch): void {
  conn[DISPATCH] = dispatch
  conn[BUSY] = true
  // The connection may have ended before the controller started (the runtime opened the
  // socket before the HTTP handler returned): `close` is still owed, once `open` settles.
  if (conn[STATE] === 'closed') conn[CLOSE_OWED] = true
}

/** The `open` handler settled: hand over what arrived meanwhile. */
export function ready(conn: Conn): void {
  conn[BUSY] = false
  drainEvents(conn)
}

/**
 * A handler failed: no more messages go to the controller, neither the queued ones nor those
 * that arrive while the failure is reported and the connection closes.
 */
export function stopDispatch(conn: Conn): void {
  conn[DISPATCH_STOPPED] = true
  dropInbox(conn)
}

/** A message arrived with no handler running and none waiting: it runs at once. */
export function runNow(conn: Conn, message: Message): void {
  run(conn, message)
  // The handler may have closed the connection, or the runtime handed over more, while it
  // ran: what it deferred runs now, after it.
  if (!conn[BUSY] && (conn[CLOSE_OWED] || conn[INBOX] !== NO_MESSAGES)) drainEvents(conn)
}

/**
 * Runs the message handler; a promise makes the next message wait for it. The connection is
 * busy from the call on, not only once a promise comes back: an end reported while the
 * handler's synchronous part runs (a runtime that ends the connection inside `close()`, as
 * Bun does; a close with no handshake wait) must not run `close` inside `message`.
 */
function run(conn: Conn, message: Message): void {
  const dispatch = conn[DISPATCH] as EventDispatch
  let result: unknown
  conn[BUSY] = true
  try {
    result = dispatch.message(conn, message)
  } catch (err) {
    conn[BUSY] = false
    dispatch.fail(conn, err)
    return
  }
  // `return conn.send(data)` with no back-pressure returns the already-settled `resolved`:
  // nothing to wait for, so the next message runs without a promise and a turn per message.
  if (result === undefined || result === resolved) {
    conn[BUSY] = false
    return
  }
  if (typeof (result as PromiseLike<unknown>)?.then === 'function') {
    ;(result as PromiseLike<unknown>).then(
      () => afterHandler(conn),
      (err: unknown) => {
        dispatch.fail(conn, err)
        afterHandler(conn)
      },
    )
  } else {
    conn[BUSY] = false
  }
}

function afterHandler(conn: Conn): void {
  conn[BUSY] = false
  drainEvents(conn)
}

/** The connection closed: the `close` handler is owed, now if no handler is running. */
export function owedClose(conn: Conn): void {
  if (!conn[DISPATCH]) return
  conn[CLOSE_OWED] = true
  if (!conn[BUSY]) drainEvents(conn)
}

/** Hands queued messages to the controller, one at a time, then the close when it is owed. */
function drainEvents(conn: Conn): void {
  while (!conn[BUSY]) {
    const message = shift(conn)
    if (message) {
      run(conn, message)
      continue
    }
    if (conn[CLOSE_OWED]) {
      conn[CLOSE_OWED] = false
      const dispatch = conn[DISPATCH] as EventDispatch
      dispatch.closed(conn, conn[CLOSE_ERROR] as CloseEnd)
    }
    return
  }
}

/** `serve`, or the close handler, settled: `events.ended` may resolve. */
export function settleEnded(conn: Conn): void {
  if (conn[ENDED_SETTLED]) return
  conn[ENDED_SETTLED] = true
  conn[RESOLVE_ENDED]?.()
  conn[HOME].hub.connections[ENDED](conn)
}

/** The promise behind the adapter's `events.ended`: resolves once `serve` or `close` settled. */
export function whenEnded(conn: Conn): Promise<void> {
  if (conn[ENDED_SETTLED]) return resolved
  conn[WHEN_ENDED] ??= new Promise((resolve) => {
    conn[RESOLVE_ENDED] = resolve
  })
  return conn[WHEN_ENDED]
}
