/**
 * A runtime's own limits, set once per server, against each route's: the check that keeps a
 * runtime from silently undoing the core's bounds (Bun's `maxPayloadLength` and
 * `backpressureLimit`).
 * @module
 */
import type { UpgradeRequest } from './port.js'

/** The limits a runtime applies to every connection of a server, and how to change them. */
export interface RuntimeLimits {
  /** The largest message the runtime accepts, in bytes. */
  readonly maxMessageSize: number
  /** The bytes the runtime queues on one connection before it drops what is sent. */
  readonly sendLimit: number
  /** The names of the two limits, for messages: `["Bun's maxPayloadLength", ...]`. */
  readonly names: readonly [messageLimit: string, sendLimit: string]
  /** How to raise `maxMessageSize`, for messages. */
  readonly raiseMessageLimit: string
  /** How to raise `sendLimit`, for messages. */
  readonly raiseSendLimit: string
  /** Set once the message limit was found too low: it is logged once. */
  warned?: boolean
}

/**
 * Checks one connection's route against the runtime's limits, as it opens. A message limit under
 * the route's `maxMessageSize` is logged once (the runtime refuses bigger messages first, with
 * 1009). A send limit not above its `maxPublishBuffer` refuses the connection: the runtime would
 * drop published messages where the core closes a slow subscriber with 1008.
 * @returns the error to refuse the connection with, naming the option to change; or undefined
 */
export function checkRuntimeLimits(
  request: UpgradeRequest,
  limits: RuntimeLimits,
): RangeError | undefined {
  if (!limits.warned && request.maxMessageSize > limits.maxMessageSize) {
    limits.warned = true
    console.warn(
      `A route allows messages of ${request.maxMessageSize} bytes, but ${limits.names[0]} refuses any over ${limits.maxMessageSize}: ${limits.raiseMessageLimit}.`,
    )
  }
  if (request.maxPublishBuffer < limits.sendLimit) return undefined
  return new RangeError(
    `A route's maxPublishBuffer (${request.maxPublishBuffer} bytes) is not below ${limits.names[1]} (${limits.sendLimit} bytes), so a slow subscriber would lose messages instead of being closed with 1008: ${limits.raiseSendLimit}, or lower that upgrader's maxPublishBuffer.`,
  )
}
