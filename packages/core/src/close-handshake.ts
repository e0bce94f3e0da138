/**
 * A connection's close state machine: `open`, then `closing` (a close frame was sent, or a fault
 * was seen), then `closed`. Each way a connection ends has its own path here:
 * - a local `close()` ({@link closeConn}) sends one close frame and waits for the peer's, for at
 *   most the close-handshake timeout;
 * - the timeout, or a shutdown's deadline, tears the connection down ({@link tearDown});
 * - a fault seen here, 1008 or 1009, closes with its code ({@link fail});
 * - the runtime reports an error ({@link onError}) or the end ({@link onClosed}).
 *
 * All of them end in {@link finish}, once: pending reads, sends and pings settle, the connection
 * leaves its registry and its topics, and an event controller's `close` handler is owed.
 * @internal
 * @module
 */
import { CloseCode, CloseEnd, type CloseError, isNormalClose } from './close.js'
import type { Conn, ConnState } from './conn.js'
import {
  ABORT,
  ABORT_REASON,
  CLOSE_ERROR,
  CLOSE_TIMEOUT,
  CLOSE_TIMER,
  ENDED_SETTLED,
  FAULT,
  HOME,
  resolved,
  SETTLE_CLOSED,
  SOCKET,
  STATE,
  WHEN_CLOSED,
} from './conn-fields.js'
import { owedClose } from './dispatch.js'
import { endRead, readOnToClose } from './inbound.js'
import { CLOSED_HERE, DELETE, ENDED } from './internal.js'
import { leaveAll } from './membership.js'
import { rejectWaiters } from './outbound.js'

/** `conn.close()` with a code and reason known to be sendable. */
export function closeConn(conn: Conn, code: number, reason: string): Promise<void> {
  if (conn[STATE] !== 'open') return whenClosed(conn)
  // A close for a fault (fail) has set the fault first: that one is not this side's choice.
  if (conn[FAULT] === undefined) conn[CLOSED_HERE] = true
  startClosing(conn, code, reason)
  try {
    conn[SOCKET].close(code, reason)
  } catch {
    tearDown(conn, 'The runtime refused to send the close frame')
    return whenClosed(conn)
  }
  // A runtime may end the connection inside close() (Bun does): then there is nothing to wait for.
  if ((conn[STATE] as ConnState) === 'closing') armCloseTimer(conn)
  return whenClosed(conn)
}

function startClosing(conn: Conn, code: number, reason: string): void {
  conn[STATE] = 'closing'
  const closing = new CloseEnd(code, reason, false)
  abortWith(conn, closing)
  // Sends waiting for a drain will never be written in full: fail them now.
  rejectWaiters(conn, closing)
  readOnToClose(conn)
}

function armCloseTimer(conn: Conn): void {
  // The runtime finishes the handshake itself and reports its end (the Hibernation API).
  if (conn[SOCKET].closesHandshake) return
  const timeout = conn[CLOSE_TIMEOUT]
  if (timeout <= 0) {
    tearDown(conn, 'No close handshake wait (timeout is 0)')
    return
  }
  conn[CLOSE_TIMER] = setTimeout(
    () => tearDown(conn, `The peer did not answer the close frame within ${timeout} ms`),
    timeout,
  )
}

/** Ends the connection without waiting any longer for the peer. */
export function tearDown(conn: Conn, reason: string): void {
  if (conn[STATE] === 'closed') return
  // A runtime may report the end inside terminate() (the test kit does): it ends with this
  // reason all the same, as where the end comes later.
  conn[FAULT] ??= new CloseEnd(CloseCode.AbnormalClosure, reason, false)
  try {
    conn[SOCKET].terminate?.()
  } catch {
    // The socket is already gone: nothing left to tear down.
  }
  // terminate() may have reported the end already, synchronously.
  if ((conn[STATE] as ConnState) === 'closed') return
  finish(conn, new CloseEnd(CloseCode.AbnormalClosure, reason, false))
}

/** Closes the connection because of a fault seen here (1008, 1009). */
export function fail(conn: Conn, code: number, reason: string): void {
  conn[FAULT] ??= new CloseEnd(code, reason, false)
  void conn.close(code, reason)
}

/** The runtime reports an error: the connection closes with it. */
export function onError(conn: Conn, error: Error, code?: number): void {
  if (conn[STATE] === 'closed') return
  conn[FAULT] ??= new CloseEnd(code ?? CloseCode.AbnormalClosure, error.message, false)
  if (conn[STATE] === 'open') {
    // The runtime closes on its own after a fault; the timer covers a runtime that does not.
    startClosing(conn, conn[FAULT].code, conn[FAULT].reason)
    armCloseTimer(conn)
  }
}

/** The runtime reports the end: with the fault seen first, if any, else as the peer closed. */
export function onClosed(conn: Conn, code: number, reason: string, wasClean?: boolean): void {
  if (conn[STATE] === 'closed') return
  const fault = conn[FAULT]
  finish(
    conn,
    fault
      ? new CloseEnd(fault.code, fault.reason, false)
      : new CloseEnd(code, reason, wasClean ?? code !== CloseCode.AbnormalClosure),
  )
}

function finish(conn: Conn, end: CloseEnd): void {
  if (conn[STATE] === 'closed') return
  conn[STATE] = 'closed'
  conn[CLOSE_ERROR] = end
  // Most connections never armed one; on some runtimes clearing is a call into native code.
  if (conn[CLOSE_TIMER] !== undefined) clearTimeout(conn[CLOSE_TIMER])
  abortWith(conn, end)
  endRead(conn, end)
  rejectWaiters(conn, end)
  const connections = conn[HOME].hub.connections
  connections[DELETE](conn)
  if (conn[ENDED_SETTLED]) connections[ENDED](conn)
  leaveAll(conn)
  conn[SETTLE_CLOSED]?.()
  owedClose(conn)
}

/**
 * Whether an iteration ends quietly at this end: a normal close (1000, 1001, 1005), or one
 * this side started itself with `close()` (a shutdown's 1012, the app's own 4000), which is
 * not the controller's failure.
 */
export function endsQuietly(conn: Conn, end: CloseEnd): boolean {
  return conn[CLOSED_HERE] || isNormalClose(end)
}

/** Aborts the signal once, with the first reason: the close that started the end. */
function abortWith(conn: Conn, reason: CloseEnd): void {
  if (conn[ABORT_REASON]) return
  conn[ABORT_REASON] = reason
  conn[ABORT]?.abort(reason.error)
}

/** Resolves once the connection is closed, whoever closed it. */
export function whenClosed(conn: Conn): Promise<void> {
  conn[WHEN_CLOSED] ??=
    conn[STATE] === 'closed'
      ? resolved
      : new Promise((resolve) => {
          conn[SETTLE_CLOSED] = resolve
        })
  return conn[WHEN_CLOSED]
}

/** What a send or a ping rejects with once the connection is closing or closed. */
export function endError(conn: Conn): CloseError {
  return (conn[CLOSE_ERROR] ?? (conn[ABORT_REASON] as CloseEnd)).error
}
