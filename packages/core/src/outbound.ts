/**
 * A connection's writing: `send()` resolves once the runtime holds no more than
 * `sendHighWaterMark` unsent bytes, and otherwise waits for a drain (polled where the runtime
 * reports none). Published messages never wait: over `maxPublishBuffer` unsent bytes a
 * subscriber is closed with 1008, or has the message dropped (`slowSubscriber: 'drop'`). Pings
 * wait for their pong. Whatever waits is rejected once the connection starts closing.
 * @internal
 * @module
 */
import { CloseCode, type CloseEnd, describeError } from './close.js'
import { endError, fail, onError } from './close-handshake.js'
import type { Conn } from './conn.js'
import {
  DRAIN_POLL,
  DRAIN_POLL_DELAY,
  DRAIN_WAITERS,
  LIMITS,
  PING_WAITERS,
  quiet,
  resolved,
  SOCKET,
  STATE,
} from './conn-fields.js'
import type { MessageData } from './contracts.js'
import type { RuntimeSocket } from './port.js'

/** A pending send or ping. */
export interface Waiter<T> {
  resolve(value: T): void
  reject(reason: unknown): void
}

/** The first delay of the drain poll, in milliseconds; it doubles while sends wait. */
export const DRAIN_POLL_MIN_MS = 1
const DRAIN_POLL_MAX_MS = 50

/** `conn.send()`: see its contract there. */
export function send(conn: Conn, data: MessageData): Promise<void> {
  if (conn[STATE] !== 'open') return quiet(Promise.reject(endError(conn)))
  if (typeof data !== 'string' && !(data instanceof Uint8Array)) {
    return quiet(
      Promise.reject(
        new TypeError(
          'conn.send() takes a string or a Uint8Array (use new Uint8Array(buffer) for an ArrayBuffer)',
        ),
      ),
    )
  }
  const socket = conn[SOCKET]
  // `false`: the runtime took it with no back-pressure, so there is no buffer to read.
  if (socket.send(data) === false) return resolved
  // The runtime dropped it and reported the end inside send() (Bun, past its
  // backpressureLimit): this message was not sent.
  if (conn[STATE] !== 'open') return quiet(Promise.reject(endError(conn)))
  if (!over(socket, conn[LIMITS].sendHighWaterMark)) return resolved
  return quiet(
    new Promise<void>((resolve, reject) => {
      conn[DRAIN_WAITERS] ??= []
      conn[DRAIN_WAITERS].push({ resolve, reject })
      if (!socket.emitsDrain) scheduleDrainPoll(conn)
    }),
  )
}

/** The runtime drained: sends waiting resolve, once it is back under `sendHighWaterMark`. */
export function onDrain(conn: Conn): void {
  if (conn[SOCKET].bufferedAmount > conn[LIMITS].sendHighWaterMark) return
  const waiters = conn[DRAIN_WAITERS]
  conn[DRAIN_WAITERS] = undefined
  for (const waiter of waiters ?? []) waiter.resolve()
}

function scheduleDrainPoll(conn: Conn): void {
  if (conn[DRAIN_POLL] !== undefined) return
  conn[DRAIN_POLL] = setTimeout(() => {
    conn[DRAIN_POLL] = undefined
    onDrain(conn)
    if (conn[DRAIN_WAITERS] === undefined) {
      conn[DRAIN_POLL_DELAY] = DRAIN_POLL_MIN_MS
      return
    }
    conn[DRAIN_POLL_DELAY] = Math.min(conn[DRAIN_POLL_DELAY] * 2, DRAIN_POLL_MAX_MS)
    scheduleDrainPoll(conn)
  }, conn[DRAIN_POLL_DELAY])
}

/** `conn.ping()`: see its contract there. */
export function ping(conn: Conn): Promise<void> {
  const socket = conn[SOCKET]
  if (!socket.ping) {
    return quiet(
      Promise.reject(
        new Error('This runtime cannot send pings: check conn.canPing before calling conn.ping()'),
      ),
    )
  }
  if (conn[STATE] !== 'open') return quiet(Promise.reject(endError(conn)))
  socket.ping()
  return quiet(
    new Promise((resolve, reject) => {
      conn[PING_WAITERS] ??= []
      conn[PING_WAITERS].push({ resolve, reject })
    }),
  )
}

/** A pong arrived: every ping waiting resolves. */
export function onPong(conn: Conn): void {
  const waiters = conn[PING_WAITERS]
  conn[PING_WAITERS] = undefined
  for (const waiter of waiters ?? []) waiter.resolve()
}

/** The connection is closing or closed: sends and pings waiting reject with `error`. */
export function rejectWaiters(conn: Conn, end: CloseEnd): void {
  if (!conn[DRAIN_WAITERS] && !conn[PING_WAITERS]) return
  if (conn[DRAIN_POLL] !== undefined) clearTimeout(conn[DRAIN_POLL])
  conn[DRAIN_POLL] = undefined
  const waiters = [...(conn[DRAIN_WAITERS] ?? []), ...(conn[PING_WAITERS] ?? [])]
  conn[DRAIN_WAITERS] = conn[PING_WAITERS] = undefined
  const error = end.error
  for (const waiter of waiters) waiter.reject(error)
}

/**
 * Delivers a published message: never waits, never throws. False when it was not sent (dropped
 * or the connection closed past `maxPublishBuffer`, or not open). `notice` (a recovery's gap
 * notice) goes just before `data`, and only with it: it is framed only then, so that a run of
 * drops frames it once. `always` sends past the bound under `slowSubscriber: 'drop'`: for the
 * one gap notice a recovery still owes when it goes live (under `'close'`, past the bound is a
 * close with 1008, notice or not).
 */
export function deliver(
  conn: Conn,
  data: MessageData,
  notice?: () => MessageData | undefined,
  always = false,
): boolean {
  if (conn[STATE] !== 'open') return false
  try {
    const limits = conn[LIMITS]
    if (
      over(conn[SOCKET], limits.maxPublishBuffer) &&
      !(always && limits.slowSubscriber === 'drop')
    ) {
      if (limits.slowSubscriber === 'drop') conn.droppedMessages++
      else tooSlow(conn)
      return false
    }
    if (notice !== undefined) {
      const framed = notice()
      if (framed !== undefined) conn[SOCKET].send(framed)
    }
    conn[SOCKET].send(data)
    return true
  } catch (err) {
    onError(conn, err instanceof Error ? err : new Error(describeError(err)))
    return false
  }
}

/**
 * Whether the runtime holds more than `limit` unsent bytes. `bufferedAmount` is a native call on
 * some runtimes: it is read only when the adapter's free bound (`bufferedAtMost`) is past `limit`.
 */
export function over(socket: RuntimeSocket, limit: number): boolean {
  const atMost = socket.bufferedAtMost
  return (atMost === undefined || atMost > limit) && socket.bufferedAmount > limit
}

/** The runtime's tree sent to this connection: closes it when it is over its bound. */
export function checkBacklog(conn: Conn): void {
  if (conn[STATE] !== 'open') return
  try {
    if (conn[SOCKET].bufferedAmount > conn[LIMITS].maxPublishBuffer) tooSlow(conn)
  } catch (err) {
    onError(conn, err instanceof Error ? err : new Error(describeError(err)))
  }
}

function tooSlow(conn: Conn): void {
  fail(
    conn,
    CloseCode.PolicyViolation,
    `Subscriber too slow: over ${conn[LIMITS].maxPublishBuffer} bytes of published messages unsent`,
  )
}
