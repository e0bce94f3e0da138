/**
 * A connection's reading: messages wait in an inbox until `serve` asks for them (`read()`, the
 * iterator) or an event controller's handler is free. The inbox is bounded by
 * `maxInboundBuffer`: past it the runtime's reading is paused where it can be, and resumed at
 * half; past twice the bound (a runtime that cannot pause, or hands over what it already parsed)
 * the connection closes with 1008. A message over `maxMessageSize` closes it with 1009.
 * @internal
 * @module
 */
import { CloseCode, type CloseEnd, utf8Length } from './close.js'
import { endsQuietly, fail } from './close-handshake.js'
import type { Conn } from './conn.js'
import {
  BUSY,
  CLOSE_ERROR,
  DISPATCH,
  DISPATCH_STOPPED,
  INBOX,
  INBOX_BYTES,
  INBOX_HEAD,
  LIMITS,
  PAUSED,
  quiet,
  READ_ITERATING,
  READ_RESOLVE,
  SOCKET,
  STATE,
} from './conn-fields.js'
import { MESSAGE_OVERHEAD_BYTES, type Message } from './contracts.js'
import { runNow } from './dispatch.js'

/** The end of an iteration. */
export const DONE: IteratorReturnResult<undefined> = Object.freeze({
  done: true,
  value: undefined,
})

/**
 * The empty inbox every connection starts with and returns to: one shared array, frozen so that
 * a push into it throws, replaced by a connection's own on the first message that must wait.
 */
export const NO_MESSAGES: (Message | undefined)[] = Object.freeze([]) as never

/** The pending read's resolver; an iterator's read resolves with the iterator result itself. */
export type ReadResolve = (value: Message | IteratorResult<Message> | Promise<never>) => void

/** A message from the runtime: to the pending read, to the controller, or into the inbox. */
export function onMessage(conn: Conn, data: string | Uint8Array): void {
  // Data after a close frame, after a fault, or after an event handler failed, is discarded.
  if (conn[STATE] !== 'open' || conn[DISPATCH_STOPPED]) return
  const { maxMessageSize, maxInboundBuffer } = conn[LIMITS]
  const size = typeof data === 'string' ? data.length : data.byteLength
  if (
    size > maxMessageSize / 3 &&
    (typeof data === 'string' ? utf8Length(data) : size) > maxMessageSize
  ) {
    fail(conn, CloseCode.MessageTooBig, `Message is over maxMessageSize (${maxMessageSize} bytes)`)
    return
  }
  const message: Message =
    typeof data === 'string' ? { type: 'text', data } : { type: 'binary', data }
  const resolve = conn[READ_RESOLVE]
  if (resolve) {
    conn[READ_RESOLVE] = undefined
    resolve(conn[READ_ITERATING] ? { done: false, value: message } : message)
    return
  }
  if (conn[DISPATCH] && !conn[BUSY] && conn[INBOX_HEAD] === conn[INBOX].length) {
    runNow(conn, message)
    return
  }
  if (conn[INBOX] === NO_MESSAGES) conn[INBOX] = [message]
  else conn[INBOX].push(message)
  conn[INBOX_BYTES] += size + MESSAGE_OVERHEAD_BYTES
  if (conn[INBOX_BYTES] <= maxInboundBuffer) return
  // Pause where the runtime can; it may still hand over what it already parsed, so a second
  // bound catches a runtime that does not stop.
  const socket = conn[SOCKET]
  if (socket.pause && conn[INBOX_BYTES] <= 2 * maxInboundBuffer) {
    if (!conn[PAUSED]) {
      conn[PAUSED] = true
      socket.pause()
    }
    return
  }
  fail(
    conn,
    CloseCode.PolicyViolation,
    `Inbound buffer over ${maxInboundBuffer} bytes: serve reads slower than the peer sends`,
  )
}

/** Takes the oldest waiting message, resuming the runtime's reading once below half the bound. */
export function shift(conn: Conn): Message | undefined {
  const inbox = conn[INBOX]
  if (conn[INBOX_HEAD] === inbox.length) return undefined
  const message = inbox[conn[INBOX_HEAD]] as Message
  inbox[conn[INBOX_HEAD]++] = undefined
  if (conn[INBOX_HEAD] === inbox.length) {
    conn[INBOX] = NO_MESSAGES
    conn[INBOX_HEAD] = 0
  }
  const size = typeof message.data === 'string' ? message.data.length : message.data.byteLength
  conn[INBOX_BYTES] -= size + MESSAGE_OVERHEAD_BYTES
  if (conn[PAUSED] && conn[INBOX_BYTES] <= conn[LIMITS].maxInboundBuffer / 2) {
    conn[PAUSED] = false
    if (conn[STATE] === 'open') conn[SOCKET].resume?.()
  }
  return message
}

/** Drops every waiting message: an event handler failed, and none may reach it any more. */
export function dropInbox(conn: Conn): void {
  conn[INBOX] = NO_MESSAGES
  conn[INBOX_HEAD] = 0
  conn[INBOX_BYTES] = 0
}

/**
 * The connection started closing: the peer's close frame sits behind the data we stopped
 * reading, so read on (and discard), or the handshake can only end at the timeout.
 */
export function readOnToClose(conn: Conn): void {
  if (!conn[PAUSED]) return
  conn[PAUSED] = false
  try {
    conn[SOCKET].resume?.()
  } catch {
    // The socket is gone: its end is reported separately.
  }
}

/** The connection closed: the pending read ends, quietly for an iterator where it may. */
export function endRead(conn: Conn, end: CloseEnd): void {
  const resolve = conn[READ_RESOLVE]
  conn[READ_RESOLVE] = undefined
  if (resolve)
    resolve(
      conn[READ_ITERATING] && endsQuietly(conn, end) ? DONE : quiet(Promise.reject(end.error)),
    )
}

/** A read, resolving with the message, or with the iterator result when `iterating`. */
export function pull(conn: Conn, iterating: boolean): Promise<Message | IteratorResult<Message>> {
  if (conn[DISPATCH]) {
    return quiet(
      Promise.reject(
        new Error(
          'An event controller gets its messages in message(): conn.read() is for serve controllers',
        ),
      ),
    )
  }
  if (conn[READ_RESOLVE]) {
    return quiet(
      Promise.reject(
        new Error('Only one read may be pending at a time: await the previous conn.read() first'),
      ),
    )
  }
  const message = shift(conn)
  if (message) return Promise.resolve(iterating ? { done: false, value: message } : message)
  const end = conn[CLOSE_ERROR]
  if (end)
    return iterating && endsQuietly(conn, end) ? Promise.resolve(DONE) : Promise.reject(end.error)
  return new Promise((resolve) => {
    conn[READ_RESOLVE] = resolve
    conn[READ_ITERATING] = iterating
  })
}

/** A connection's iterator: one small object with prototype methods, not two closures. */
export class Messages implements AsyncIterator<Message> {
  constructor(readonly conn: Conn) {}
  next(): Promise<IteratorResult<Message>> {
    return pull(this.conn, true) as Promise<IteratorResult<Message>>
  }
  return(): Promise<IteratorResult<Message>> {
    return Promise.resolve(DONE)
  }
}
