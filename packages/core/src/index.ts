/**
 * Handshake: Goyave's WebSocket controller model for Hono.
 *
 * ```ts
 * import { upgrade, type Conn, type Controller } from '@handshake/core'
 *
 * class Echo implements Controller {
 *   async serve(conn: Conn) {
 *     for await (const msg of conn) await conn.send(msg.data)
 *   }
 * }
 * app.get('/ws', upgrade(new Echo()))
 * ```
 *
 * Each server, Worker and Durable Object is a {@link Hub}: it owns its topics and its
 * connections. Reach them with {@link getHub} in a route and `conn.hub` in an event handler.
 * Adapters and backplanes import the port from `@handshake/core/adapter`.
 * @module
 */
export {
  CloseCode,
  CloseError,
  InternalErrorMessage,
  isCloseError,
  MAX_CLOSE_REASON_BYTES,
  NormalClosureMessage,
  truncateReason,
} from './close.js'
export { Conn, type ConnState, MAX_CONN_DATA_BYTES } from './conn.js'
export { Connections, ShutdownMessage, type ShutdownOptions } from './connections.js'
export type {
  AnyController,
  Controller,
  ControllerWithHooks,
  ErrorHandler,
  EventController,
  EventControllerWithHooks,
  HeadersLike,
  HeaderUpgrader,
  Hooks,
  Logger,
  Message,
  MessageData,
  OriginChecker,
  Registrer,
  SlowSubscriberPolicy,
  UpgradeErrorHandler,
  UpgradeOptions,
  UpgradeSettings,
} from './contracts.js'
export {
  type Delivery,
  GapEvent,
  type HistoryOptions,
  type Position,
  type SubscribeOptions,
  type Subscription,
  type TopicsHistoryOptions,
} from './history.js'
export { getHub, type Hub } from './hub.js'
export {
  MAX_PRESENCE_META_BYTES,
  PresenceEvent,
  type PresenceMember,
  type PresenceMeta,
} from './presence.js'
export { UncloneableError } from './serialized.js'
export { Topics, type TopicsOptions } from './topics.js'
export { isSameOrigin, UpgradeError, Upgrader, upgrade } from './upgrade.js'
