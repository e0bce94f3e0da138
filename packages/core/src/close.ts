/**
 * Close codes, the close error and the rules a close frame must follow.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6455#section-7.4
 * @see https://www.iana.org/assignments/websocket/websocket.xhtml#close-code-number
 * @module
 */

/**
 * The close status codes of RFC 6455 §7.4.1 that Handshake uses or reports.
 *
 * Codes marked "reserved" are reported by the runtime but can never be sent in a close frame;
 * passing them to `conn.close()` is a `RangeError`.
 */
export const CloseCode = {
  /** 1000: the purpose of the connection has been fulfilled. */
  NormalClosure: 1000,
  /** 1001: the endpoint is going away: a server shutting down, or a browser leaving the page. */
  GoingAway: 1001,
  /** 1002: the peer broke the protocol (an unmasked frame, a bad opcode...). */
  ProtocolError: 1002,
  /** 1003: the endpoint received a type of data it cannot accept. */
  UnsupportedData: 1003,
  /** 1005: reserved. Reported when a close frame carried no code. Never sent. */
  NoStatusReceived: 1005,
  /** 1006: reserved. Reported when the connection ended without a close frame. Never sent. */
  AbnormalClosure: 1006,
  /** 1007: a message's data was not consistent with its type (invalid UTF-8 in a text message). */
  InvalidFramePayloadData: 1007,
  /** 1008: a message violated the endpoint's policy (used when inbound data outruns `serve`). */
  PolicyViolation: 1008,
  /** 1009: a message was too big to process (over `maxMessageSize`). */
  MessageTooBig: 1009,
  /** 1010: the client expected an extension the server did not negotiate. Sent by clients only. */
  MandatoryExtension: 1010,
  /** 1011: the server met an unexpected condition (`serve` threw). */
  InternalError: 1011,
  /** 1012: the server is restarting. */
  ServiceRestart: 1012,
  /** 1013: try again later (temporary overload). */
  TryAgainLater: 1013,
  /** 1015: reserved. Reported when the TLS handshake failed. Never sent. */
  TLSHandshake: 1015,
} as const

/** The message sent with the close frame when `serve` returns or `closeNormal()` is called. */
export const NormalClosureMessage = 'Server closed connection'

/** The reason sent with code 1011 when `serve` fails and `debug` is off. */
export const InternalErrorMessage = 'Internal server error'

/** The longest close reason a frame can carry, in UTF-8 bytes (125 minus the 2-byte code). */
export const MAX_CLOSE_REASON_BYTES = 123

/**
 * The error a connection's reads and sends reject with once it has closed.
 *
 * `code` is the close code the connection ended with: the peer's, the one a protocol fault
 * called for (1002, 1007, 1009...), or 1006 when it ended without a close frame.
 */
export class CloseError extends Error {
  override readonly name = 'CloseError'

  /**
   * @param code - the close status code, see {@link CloseCode}
   * @param reason - the close reason, possibly empty
   * @param wasClean - true when both close frames were exchanged
   */
  constructor(
    readonly code: number,
    readonly reason: string,
    readonly wasClean: boolean,
  ) {
    super(`WebSocket closed with code ${code}${reason ? `: ${reason}` : ''}`)
  }
}

/**
 * A {@link CloseError} without a stack trace. The connection makes these from a {@link CloseEnd}
 * when something first reads its end (the stack would name that reader, not the close), and
 * capturing one was the largest single cost of a short-lived connection. Where the engine has no `Error.stackTraceLimit`, this is a plain construction.
 * @internal
 */
export function closeErrorOf(code: number, reason: string, wasClean: boolean): CloseError {
  const errorClass = Error as { stackTraceLimit?: number }
  const limit = errorClass.stackTraceLimit
  errorClass.stackTraceLimit = 0
  try {
    return new CloseError(code, reason, wasClean)
  } finally {
    errorClass.stackTraceLimit = limit
  }
}

/**
 * How a connection ended, or started closing: its code, reason and cleanness, made into a
 * {@link CloseError} only when something sees it (a pending `read()`, a rejected send, the
 * signal's reason, an event controller's `close`), and then always the same one. A peer's normal
 * close ends a `for await` with `done` and needs no error object; building one on every close
 * was a cost of each connection's churn (Deno, which ignores `Error.stackTraceLimit`, pays
 * a stack trace for it).
 * @internal
 */
export class CloseEnd {
  #error: CloseError | undefined
  constructor(
    readonly code: number,
    readonly reason: string,
    readonly wasClean: boolean,
  ) {}

  /** The error, made on first use. */
  get error(): CloseError {
    this.#error ??= closeErrorOf(this.code, this.reason, this.wasClean)
    return this.#error
  }
}

/** How deep {@link isCloseError} follows `cause`: enough for any real wrapping, safe on cycles. */
const MAX_CAUSE_DEPTH = 8

/**
 * Tells whether an error is a normal end of the connection: a {@link CloseError} with code
 * 1000 (normal closure), 1001 (going away) or 1005 (no status received), or an error that wraps
 * one in its `cause` chain (`new Error('read failed', { cause: closeError })`), as Goyave's
 * `IsCloseError` looks through wrapped errors with `errors.As`. At most 8 causes are followed.
 *
 * `serve` may let such an error escape: the upgrader then closes normally and logs nothing.
 */
export function isCloseError(err: unknown): boolean {
  let current = err
  for (let depth = 0; depth <= MAX_CAUSE_DEPTH; depth++) {
    if (current instanceof CloseError) return isNormalCode(current.code)
    if (typeof current !== 'object' || current === null) return false
    try {
      current = (current as { cause?: unknown }).cause
    } catch {
      return false
    }
  }
  return false
}

/** The {@link CloseError} in an error's `cause` chain, if any (at most 8 deep). @internal */
export function closeErrorIn(err: unknown): CloseError | undefined {
  let current = err
  for (let depth = 0; depth <= MAX_CAUSE_DEPTH; depth++) {
    if (current instanceof CloseError) return current
    if (typeof current !== 'object' || current === null) return undefined
    try {
      current = (current as { cause?: unknown }).cause
    } catch {
      return undefined
    }
  }
  return undefined
}

function isNormalCode(code: number): boolean {
  return (
    code === CloseCode.NormalClosure ||
    code === CloseCode.GoingAway ||
    code === CloseCode.NoStatusReceived
  )
}

/** Whether a close error ends an iteration quietly (1000, 1001, 1005). @internal */
export function isNormalClose(error: { readonly code: number }): boolean {
  return isNormalCode(error.code)
}

/**
 * The message of anything thrown, never throwing itself: a value with no string form
 * (`Object.create(null)`) or an error whose `message` getter throws gets a placeholder.
 * @internal
 */
export function describeError(err: unknown): string {
  try {
    if (err instanceof Error) return String(err.message)
    return String(err)
  } catch {
    return 'a value that cannot be converted to a string'
  }
}

const encoder = new TextEncoder()

/** The UTF-8 byte length of a string. */
export function utf8Length(text: string): number {
  return encoder.encode(text).byteLength
}

/**
 * Checks a close code and reason before anything is sent.
 *
 * @throws RangeError when the code may not be sent (RFC 6455 §7.4) or the reason is over 123 bytes.
 */
export function assertSendableClose(code: number, reason: string): void {
  if (!isSendableCode(code)) {
    throw new RangeError(
      `Invalid close code ${code}: use 1000-1003, 1007-1014 or an application code in 3000-4999`,
    )
  }
  const bytes = utf8Length(reason)
  if (bytes > MAX_CLOSE_REASON_BYTES) {
    throw new RangeError(
      `Close reason is ${bytes} UTF-8 bytes; the limit is ${MAX_CLOSE_REASON_BYTES}. Shorten it, or use truncateReason()`,
    )
  }
}

function isSendableCode(code: number): boolean {
  if (!Number.isInteger(code)) return false
  if (code >= 3000 && code <= 4999) return true
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014)
}

/**
 * Cuts a reason to at most 123 UTF-8 bytes without splitting a character, so that it fits in a
 * close frame.
 */
export function truncateReason(reason: string, maxBytes = MAX_CLOSE_REASON_BYTES): string {
  if (reason.length <= maxBytes / 3 || utf8Length(reason) <= maxBytes) return reason
  let bytes = 0
  let end = 0
  for (const char of reason) {
    const size = utf8Length(char)
    if (bytes + size > maxBytes) break
    bytes += size
    end += char.length
  }
  return reason.slice(0, end)
}
