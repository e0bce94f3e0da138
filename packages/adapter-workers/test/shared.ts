/** What the test Worker and the tests agree on. @module */

/** The size of each message `/workers/flood` sends. */
export const FLOOD_MESSAGE_BYTES = 256 * 1024
/** How many messages `/workers/flood` sends: 8 MiB, far over the 1 MiB `sendHighWaterMark`. */
export const FLOOD_MESSAGES = 32
/** How long `history-worker.ts` keeps the history of a room named `short-...` after its last publish. */
export const SHORT_TTL_MS = 1000
