/**
 * The keys of the methods only the core calls: module-private symbols, exported from no entry
 * point, so that `Conn`, `Connections` and `Topics` show an app only what it may call. A symbol
 * key costs nothing per connection: the methods stay on the prototype. The one exception is
 * `HISTORY_STORE`, which a hub's owner in another package sets.
 * @internal
 * @module
 */

// Conn, for the upgrader, the registry and the topics.
/** @internal The handlers the adapter forwards the runtime's events to. */
export const EVENTS: unique symbol = Symbol('events')
/** @internal Resolves once the connection is closed, whoever closed it. */
export const CLOSED: unique symbol = Symbol('closed')
/** @internal True when this side started the close on purpose (`close()`, a shutdown). */
export const CLOSED_HERE: unique symbol = Symbol('closedHere')
/** @internal Ends the connection now, without waiting for the peer. */
export const TERMINATE: unique symbol = Symbol('terminate')
/** @internal What to store for a connection, to rebuild it after a hibernation. */
export const SNAPSHOT: unique symbol = Symbol('snapshot')
/** @internal Rebuilds a connection's state after a hibernation. */
export const RESTORE: unique symbol = Symbol('restore')
/** @internal Turns a connection into an event controller's. */
export const DISPATCH_TO: unique symbol = Symbol('dispatchTo')
/** @internal The `open` handler settled. */
export const READY: unique symbol = Symbol('ready')
/** @internal A handler failed: no more messages go to the controller. */
export const STOP_DISPATCH: unique symbol = Symbol('stopDispatch')
/** @internal `serve`, or the close handler, settled. */
export const SETTLE_ENDED: unique symbol = Symbol('settleEnded')

// A subscriber, as Topics sees it.
/** @internal Delivers a published message. */
export const DELIVER: unique symbol = Symbol('deliver')
/** @internal The runtime's topic tree of a subscriber (Bun). */
export const TREE: unique symbol = Symbol('tree')
/** @internal Publishes through the runtime's tree, skipping the sender. */
export const PUBLISH_NATIVE: unique symbol = Symbol('publishNative')
/** @internal Applies the slow-subscriber bound after the runtime's tree sent. */
export const CHECK_BACKLOG: unique symbol = Symbol('checkBacklog')
/** @internal Joins the runtime's tree for a topic (Bun), once the core lets it go live. */
export const ENTER_TREE: unique symbol = Symbol('enterTree')

// Connections and Topics, for Conn.
/** @internal A connection joins its registry. */
export const ADD: unique symbol = Symbol('add')
/** @internal A connection leaves its registry. */
export const DELETE: unique symbol = Symbol('delete')
/** @internal A closed connection's `serve` or `close` handler has settled. */
export const ENDED: unique symbol = Symbol('ended')
/** @internal An accepted upgrade counts in its registry until its socket opens. */
export const UPGRADING: unique symbol = Symbol('upgrading')
/** @internal A connection joins a topic. */
export const JOIN: unique symbol = Symbol('join')
/** @internal A connection leaves a topic. */
export const LEAVE: unique symbol = Symbol('leave')
/** @internal A publish from a connection, which does not get its own message. */
export const PUBLISH_FROM: unique symbol = Symbol('publishFrom')
/** @internal The history options of a topic, checked: asked before a subscription changes anything. */
export const HISTORY_OF: unique symbol = Symbol('historyOf')
/** @internal What `conn.subscribe()` answers for a topic the connection holds already. */
export const HELD: unique symbol = Symbol('held')
/** @internal A connection's member of a topic it holds joins again, with other metadata. */
export const REJOIN: unique symbol = Symbol('rejoin')
/** @internal This hub's member `id` of `topic`, if it is one. */
export const MEMBER_OF: unique symbol = Symbol('memberOf')
/** @internal A held topic's presence view, made (and loaded) on first use: for channels. */
export const PRESENCE_VIEW: unique symbol = Symbol('presenceView')
/**
 * @internal Called on an event controller, when it has it, with each connection a hibernation
 * woke (rebuilt, its topics joined again), before any event of the object reaches it: for
 * channels, which send presence frames to the subscribers they had.
 */
export const WAKE: unique symbol = Symbol('wake')

// Topics, for the owner of a hub.
/**
 * The `HistoryStore` a hub's owner gives its topics (a Durable Object's storage):
 * `hub.topics[HISTORY_STORE] = store`, before any connection subscribes. Without it, and without
 * a backplane that keeps history, a hub keeps history in memory. Exported by
 * `@handshake/core/adapter`.
 */
export const HISTORY_STORE: unique symbol = Symbol.for('handshake.historyStore') as never
