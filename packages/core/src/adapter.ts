/**
 * The adapter port, for the authors of runtime adapters and backplanes: what a runtime package
 * implements ({@link Adapter}, {@link RuntimeSocket}) and calls ({@link installAdapter},
 * {@link createHub}), and what a backplane implements ({@link Backplane}). Apps import
 * `@handshake/core` instead.
 *
 * ```ts
 * import { type Adapter, createHub, HUB, installAdapter } from '@handshake/core/adapter'
 *
 * const hub = createHub() // the default hub of the runtime's short form
 * export const adapter: Adapter = { name: 'myruntime', upgrade, hub: () => hub }
 * installAdapter(adapter)
 * // A server of its own: its hub rides in the env of each request.
 * const serverHub = createHub()
 * const fetch = (request: Request) => app.fetch(request, { [HUB]: serverHub })
 * ```
 * @module
 */
export {
  type AcceptedSocket,
  answerClose,
  keepAlive,
  ReadyState,
  serveAccepted,
  type WebSocketLike,
} from './accepted-socket.js'
export { DEFAULT_SHUTDOWN_TIMEOUT } from './connections.js'
export {
  defaultSettings,
  isEventController,
  MESSAGE_OVERHEAD_BYTES,
} from './contracts.js'
export { type HibernatableSocket, Hibernation, type HibernationHost } from './hibernation.js'
export type { HistoryRead, HistoryStore } from './history.js'
export { createHub, type HandshakeServer, HUB, type ServerAddress } from './hub.js'
export { HISTORY_STORE } from './internal.js'
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
  type Corkable,
  corkForTurn,
  type RawHead,
  type RawSocket,
  type RawUpgradeRuntime,
  RawUpgrades,
  rawRequest,
  rawUrl,
} from './raw-upgrade.js'
export { checkRuntimeLimits, type RuntimeLimits } from './runtime-limits.js'
export { assertAttachmentFits, MAX_ATTACHMENT_BYTES, serializedSize } from './serialized.js'
export {
  answerUpgrade,
  atDeadline,
  type ByteSink,
  deferredUpgrade,
  type FetchApp,
  handshakeHeaders,
  handshakeHeadersIfAny,
  headerLines,
  hubOf,
  hubServer,
  ownBytes,
  RequestView,
  shutdownDeadline,
  type UpgradeAnswer,
  withHub,
  writeResponse,
} from './serving.js'
export { StoredHistory, type SyncStorage } from './stored-history.js'
export type {
  Backplane,
  BackplaneHistory,
  BackplanePresence,
  BackplaneSink,
  TopicTree,
} from './topics.js'
export { chooseSubprotocol, findUpgrader, upgraderOf, validateHandshake } from './upgrade.js'
