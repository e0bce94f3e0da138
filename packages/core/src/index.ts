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
export { Conn, type ConnLimits, type ConnState } from './conn.js'
export {
  type Controller,
  type ControllerWithHooks,
  defaultSettings,
  type ErrorHandler,
  type HeaderUpgrader,
  type Logger,
  MESSAGE_OVERHEAD_BYTES,
  type Message,
  type MessageData,
  type OriginChecker,
  type Registrer,
  type UpgradeErrorHandler,
  type UpgradeOptions,
  type UpgradeSettings,
} from './contracts.js'
export {
  ADAPTER,
  type Adapter,
  installAdapter,
  type RuntimeSocket,
  type SocketEvents,
  type UpgradeRequest,
} from './port.js'
export {
  chooseSubprotocol,
  isSameOrigin,
  UpgradeError,
  Upgrader,
  upgrade,
  validateHandshake,
} from './upgrade.js'
