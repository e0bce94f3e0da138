/**
 * The fields of a `Conn`, keyed by module-private symbols, and the two promise helpers its parts
 * share. Each part of a connection is a file of module functions that take the connection:
 * `close-handshake.ts`, `inbound.ts`, `outbound.ts`, `dispatch.ts`, `membership.ts` and
 * `storage.ts`. A symbol key costs what a `#private` field costs (one slot in the object, as
 * V8's private names are symbols too): splitting `Conn` adds no object and no byte per
 * connection. Exported from no entry point.
 * @internal
 * @module
 */

// Where the connection lives.
/** @internal The runtime's socket, through the adapter port. */
export const SOCKET: unique symbol = Symbol('socket')
/** @internal The limits from the upgrader's options. */
export const LIMITS: unique symbol = Symbol('limits')
/** @internal Its hub and the URL it was upgraded on. */
export const HOME: unique symbol = Symbol('home')

// The close handshake (close-handshake.ts).
/** @internal `open`, `closing` or `closed`. */
export const STATE: unique symbol = Symbol('state')
/** @internal The time `close()` waits for the peer's close frame, in milliseconds. */
export const CLOSE_TIMEOUT: unique symbol = Symbol('closeTimeout')
/** @internal The fault that ends the connection (a 1008, a 1009, a runtime's error). */
export const FAULT: unique symbol = Symbol('fault')
/** @internal The error the connection ended with, once closed. */
export const CLOSE_ERROR: unique symbol = Symbol('closeError')
/** @internal The close-handshake timer, when one is armed. */
export const CLOSE_TIMER: unique symbol = Symbol('closeTimer')
/** @internal The promise of the end, made on first use. */
export const WHEN_CLOSED: unique symbol = Symbol('whenClosed')
/** @internal Resolves {@link WHEN_CLOSED}. */
export const SETTLE_CLOSED: unique symbol = Symbol('settleClosed')
/** @internal The signal's controller, made on first use. */
export const ABORT: unique symbol = Symbol('abort')
/** @internal The first close reason: what the signal aborts with. */
export const ABORT_REASON: unique symbol = Symbol('abortReason')

// Reading (inbound.ts).
/** @internal Messages that arrived before they were asked for. */
export const INBOX: unique symbol = Symbol('inbox')
/** @internal The index of the oldest message in {@link INBOX}. */
export const INBOX_HEAD: unique symbol = Symbol('inboxHead')
/** @internal The bytes {@link INBOX} holds, as `maxInboundBuffer` counts them. */
export const INBOX_BYTES: unique symbol = Symbol('inboxBytes')
/** @internal The runtime's reading is paused. */
export const PAUSED: unique symbol = Symbol('paused')
/** @internal The resolver of the one pending read. */
export const READ_RESOLVE: unique symbol = Symbol('readResolve')
/** @internal The pending read is an iterator's: it resolves with an iterator result. */
export const READ_ITERATING: unique symbol = Symbol('readIterating')

// Writing and ping (outbound.ts).
/** @internal Sends waiting for the runtime to drain, made on first use. */
export const DRAIN_WAITERS: unique symbol = Symbol('drainWaiters')
/** @internal The drain poll's timer, where the runtime reports no drain. */
export const DRAIN_POLL: unique symbol = Symbol('drainPoll')
/** @internal The drain poll's next delay, in milliseconds. */
export const DRAIN_POLL_DELAY: unique symbol = Symbol('drainPollDelay')
/** @internal Pings waiting for a pong, made on first use. */
export const PING_WAITERS: unique symbol = Symbol('pingWaiters')

// Event controllers (dispatch.ts).
/** @internal How the controller's handlers are called. */
export const DISPATCH: unique symbol = Symbol('dispatch')
/** @internal A handler is running. */
export const BUSY: unique symbol = Symbol('busy')
/** @internal The close handler is owed once the running one settles. */
export const CLOSE_OWED: unique symbol = Symbol('closeOwed')
/** @internal A handler failed: no message reaches the controller any more. */
export const DISPATCH_STOPPED: unique symbol = Symbol('dispatchStopped')
/** @internal The promise behind `events.ended`, made on first use. */
export const WHEN_ENDED: unique symbol = Symbol('whenEnded')
/** @internal Resolves {@link WHEN_ENDED}. */
export const RESOLVE_ENDED: unique symbol = Symbol('resolveEnded')
/** @internal `serve`, or the close handler, has settled. */
export const ENDED_SETTLED: unique symbol = Symbol('endedSettled')

// Membership and storage (membership.ts, storage.ts).
/** @internal The topics held, made on the first subscription. */
export const TOPICS: unique symbol = Symbol('topics')
/** @internal `conn.data`. */
export const DATA: unique symbol = Symbol('data')
/**
 * @internal The connection's member id, made on its first join of a topic's presence and kept
 * for its life. Its members themselves are in the hub's views (`Topics`), not here: one string
 * per connection.
 */
export const PRESENCE: unique symbol = Symbol('presence')

/** An already-resolved promise: what a send with no back-pressure returns. */
export const resolved: Promise<void> = Promise.resolve()

const noop = () => {}

/** Marks a rejected promise as handled, so a send nobody awaits cannot crash the process. */
export function quiet<T>(promise: Promise<T>): Promise<T> {
  promise.catch(noop)
  return promise
}
