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
export { Conn, type ConnLimits, type ConnState, MAX_CONN_DATA_BYTES } from './conn.js'
export {
  Connections,
  connections,
  DEFAULT_SHUTDOWN_TIMEOUT,
  ShutdownMessage,
  type ShutdownOptions,
} from './connections.js'
export {
  type AnyController,
  type Controller,
  type ControllerWithHooks,
  defaultSettings,
  type ErrorHandler,
  type EventController,
  type EventControllerWithHooks,
  type HeadersLike,
  type HeaderUpgrader,
  type Hooks,
  isEventController,
  type Logger,
  MESSAGE_OVERHEAD_BYTES,
  type Message,
  type MessageData,
  type OriginChecker,
  type Registrer,
  type SlowSubscriberPolicy,
  type UpgradeErrorHandler,
  type UpgradeOptions,
  type UpgradeSettings,
} from './contracts.js'
export {
  ADAPTER,
  type Adapter,
  type ConnSnapshot,
  installAdapter,
  type RuntimeSocket,
  type SocketEvents,
  type UpgradeRequest,
} from './port.js'
export {
  assertAttachmentFits,
  MAX_ATTACHMENT_BYTES,
  serializedSize,
  UncloneableError,
} from './serialized.js'
export {
  type Backplane,
  type BackplaneSink,
  Topics,
  type TopicsOptions,
  type TopicTree,
  topics,
} from './topics.js'
export {
  chooseSubprotocol,
  findUpgrader,
  isSameOrigin,
  UpgradeError,
  Upgrader,
  upgrade,
  upgraderOf,
  validateHandshake,
} from './upgrade.js'
