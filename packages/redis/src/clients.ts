/**
 * The two Redis clients, as the backplane uses them: typed by structure, so that neither is a
 * dependency, and each mapped to one small {@link Driver}.
 * @module
 */

// --- types ---

/**
 * What the backplane uses of an ioredis client (`new Redis(url)`; tested with ioredis 6). Any
 * object of that shape works.
 */
export interface IORedisClient {
  /** ioredis's connection status; its presence tells ioredis from node-redis. */
  readonly status: string
  /** Sends PUBLISH. */
  publish(channel: string, message: string): Promise<unknown>
  /** Sends PING: a round trip through the client's queue. */
  ping(): Promise<unknown>
  /** Sends any command (the history's scripts and reads); resolves with Redis's reply. */
  call(command: string, ...args: string[]): Promise<unknown>
  /** A new client with the same options, overridden by `options`. */
  duplicate(options: Record<string, unknown>): IORedisClient
  /** Connects a client made with `lazyConnect`; resolves once it is ready. */
  connect(): Promise<void>
  /** Sends one SUBSCRIBE for the channels; resolves with Redis's reply. */
  subscribe(...channels: string[]): Promise<unknown>
  /** Sends UNSUBSCRIBE; resolves with Redis's reply. */
  unsubscribe(channel: string): Promise<unknown>
  /** Adds an event listener. */
  // biome-ignore lint/suspicious/noExplicitAny: ioredis types each event's arguments differently
  on(event: string, listener: (...args: any[]) => void): unknown
  /** Closes the connection at once. */
  disconnect(): void
}

/** A node-redis pub/sub listener: the message, then the channel. */
export type NodeRedisListener = (message: string, channel: string) => unknown

/**
 * What the backplane uses of a node-redis client (`createClient({ url })` from `redis`, tested
 * with 6; connected). Any object of that shape works.
 */
export interface NodeRedisClient {
  /** Whether the client is connected or connecting; its presence tells node-redis apart. */
  readonly isOpen: boolean
  /** The options the client was made with (after its URL was parsed). */
  readonly options?: { readonly socket?: object } | undefined
  /** Sends PUBLISH. */
  publish(channel: string, message: string): Promise<unknown>
  /** Sends PING: a round trip through the client's queue. */
  ping(): Promise<unknown>
  /** Sends any command (the history's scripts and reads); resolves with Redis's reply. */
  sendCommand(args: string[]): Promise<unknown>
  /** A new client with the same options, overridden by `overrides`. */
  duplicate(overrides: Record<string, unknown>): NodeRedisClient
  /** Connects; resolves once the client is ready. */
  connect(): Promise<unknown>
  /** Sends one SUBSCRIBE for the channels; resolves with Redis's reply. */
  subscribe(channels: string | string[], listener: NodeRedisListener): Promise<unknown>
  /** Sends UNSUBSCRIBE for this listener; resolves with Redis's reply. */
  unsubscribe(channel: string, listener: NodeRedisListener): Promise<unknown>
  /** Adds an event listener. */
  // biome-ignore lint/suspicious/noExplicitAny: node-redis types each event's arguments differently
  on(event: string, listener: (...args: any[]) => void): unknown
  /** Closes the connection at once. */
  destroy(): void
}

/** The client the app already has: ioredis or node-redis. */
export type RedisClient = IORedisClient | NodeRedisClient

// --- the driver ---

/** What a subscriber connection reports. */
export interface SubscriberEvents {
  /** A message on a subscribed channel. */
  message(channel: string, message: string): void
  /** The connection is gone for good (it never reconnects by itself); called at most once. */
  lost(error: Error): void
}

/** One subscriber connection: it lives until it is lost or closed, and is never reused. */
export interface SubscriberConnection {
  /** Sends one SUBSCRIBE for all the channels; resolves once Redis confirmed every one. */
  subscribe(channels: string[]): Promise<void>
  /** Resolves once Redis confirmed the unsubscription. */
  unsubscribe(channel: string): Promise<void>
  /** Closes the connection; `lost` is not called for it. */
  close(): void
}

/**
 * A connection of the backplane's own for commands: it never reconnects, never queues while
 * disconnected and never sends a command again by itself, so that every command it was given is
 * answered or rejected, and the backplane alone decides what to send again, in which order.
 */
export interface CommandConnection {
  /** Sends one command; resolves with Redis's reply, rejects with its error reply or the loss. */
  call(args: string[]): Promise<unknown>
  /** Closes the connection; `lost` is not called for it. */
  close(): void
}

/** A client mapped to what the backplane needs. */
export interface Driver {
  readonly name: 'ioredis' | 'node-redis'
  /** Publishes on the app's own client. */
  publish(channel: string, message: string): Promise<unknown>
  /** A round trip on the app's own client: resolves once it reaches Redis again. */
  ping(): Promise<unknown>
  /** Sends any command on the app's own client. */
  command(args: string[]): Promise<unknown>
  /** Opens a new subscriber connection, a duplicate of the app's client that never reconnects. */
  openSubscriber(events: SubscriberEvents): Promise<SubscriberConnection>
  /** Opens a new command connection, a duplicate of the app's client (see {@link CommandConnection}). */
  openCommander(events: Pick<SubscriberEvents, 'lost'>): Promise<CommandConnection>
}

const asError = (value: unknown): Error =>
  value instanceof Error ? value : new Error(String(value))

/** Maps the app's client to a driver, telling the two clients apart by their shape. */
export function driverFor(client: RedisClient): Driver {
  // A cluster client takes other arguments in duplicate() (ioredis reads the options as its
  // startup nodes, then reconnects forever) and spreads pub/sub its own way: refused.
  const shape = client as { isCluster?: unknown; masters?: unknown; slots?: unknown }
  if (client && (shape.isCluster === true || ('masters' in client && 'slots' in client))) {
    throw new TypeError(
      'redisBackplane() does not take a Redis Cluster client (ioredis Cluster, node-redis createCluster): give it a client of one node of the cluster (new Redis(nodeUrl) or createClient({ url: nodeUrl })); a PUBLISH on any node reaches the subscribers of every node',
    )
  }
  if (client && typeof (client as IORedisClient).status === 'string') {
    return ioredisDriver(client as IORedisClient)
  }
  if (client && typeof (client as NodeRedisClient).isOpen === 'boolean') {
    return nodeRedisDriver(client as NodeRedisClient)
  }
  throw new TypeError(
    'redisBackplane() takes an ioredis client (new Redis(url)) or a node-redis client (createClient({ url }))',
  )
}

/**
 * Runs `lost` once, for the first of the connection's end events, unless it was closed by us
 * or never became ready.
 */
function lostOnce(events: Pick<SubscriberEvents, 'lost'>) {
  let state: 'connecting' | 'ready' | 'done' = 'connecting'
  return {
    ready: () => {
      if (state === 'connecting') state = 'ready'
    },
    done: () => {
      state = 'done'
    },
    lost: (error: Error) => {
      if (state !== 'ready') return
      state = 'done'
      events.lost(error)
    },
  }
}

function ioredisDriver(client: IORedisClient): Driver {
  return {
    name: 'ioredis',
    publish: (channel, message) => client.publish(channel, message),
    ping: () => client.ping(),
    command: ([command, ...args]) => client.call(command!, ...args),
    async openCommander(events) {
      const connection = client.duplicate({
        lazyConnect: true,
        retryStrategy: () => null,
        reconnectOnError: null,
        enableOfflineQueue: false,
        // Nothing is sent again by the client: the backplane sends again what was not answered.
        autoResendUnfulfilledCommands: false,
        autoResubscribe: false,
      })
      const watch = lostOnce(events)
      let lastError: Error | undefined
      connection.on('error', (error: unknown) => {
        lastError = asError(error)
      })
      connection.on('end', () => {
        watch.lost(lastError ?? new Error('The Redis history connection closed'))
      })
      try {
        await connection.connect()
      } catch (err) {
        watch.done()
        connection.disconnect()
        throw err
      }
      watch.ready()
      return {
        call: ([command, ...args]) => connection.call(command!, ...args),
        close: () => {
          watch.done()
          connection.disconnect()
        },
      }
    },
    async openSubscriber(events) {
      const subscriber = client.duplicate({
        lazyConnect: true,
        // One connection per subscriber: the backplane makes a new one and subscribes it
        // itself, rather than trusting a reconnect to restore the subscriptions.
        retryStrategy: () => null,
        autoResubscribe: false,
        reconnectOnError: null,
        // Fail at once while disconnected, instead of queueing until a reconnect that never comes.
        enableOfflineQueue: false,
      })
      const watch = lostOnce(events)
      let lastError: Error | undefined
      // Without a listener, ioredis prints every error; the backplane reports them instead.
      subscriber.on('error', (error: unknown) => {
        lastError = asError(error)
      })
      subscriber.on('end', () => {
        watch.lost(lastError ?? new Error('The Redis subscriber connection closed'))
      })
      subscriber.on('message', (channel: string, message: string) =>
        events.message(channel, message),
      )
      try {
        await subscriber.connect()
      } catch (err) {
        watch.done()
        subscriber.disconnect()
        throw err
      }
      watch.ready()
      return {
        subscribe: async (channels) => {
          await subscriber.subscribe(...channels)
        },
        unsubscribe: async (channel) => {
          await subscriber.unsubscribe(channel)
        },
        close: () => {
          watch.done()
          subscriber.disconnect()
        },
      }
    },
  }
}

function nodeRedisDriver(client: NodeRedisClient): Driver {
  return {
    name: 'node-redis',
    publish: (channel, message) => client.publish(channel, message),
    ping: () => client.ping(),
    command: (args) => client.sendCommand(args),
    async openCommander(events) {
      const connection = client.duplicate({
        socket: { ...client.options?.socket, reconnectStrategy: false },
        // With the offline queue off, a lost connection rejects every command it holds, sent
        // or not: the backplane sends them again, in order.
        disableOfflineQueue: true,
      })
      const watch = lostOnce(events)
      connection.on('error', (error: unknown) => watch.lost(asError(error)))
      connection.on('end', () => watch.lost(new Error('The Redis history connection closed')))
      try {
        await connection.connect()
      } catch (err) {
        watch.done()
        connection.destroy()
        throw err
      }
      watch.ready()
      return {
        call: (args) => connection.sendCommand(args),
        close: () => {
          watch.done()
          connection.destroy()
        },
      }
    },
    async openSubscriber(events) {
      const subscriber = client.duplicate({
        // One connection per subscriber: node-redis would resubscribe on a reconnect, and would
        // not send SUBSCRIBE again for a channel it believes it holds. (The socket options
        // are spread because duplicate() replaces them whole.)
        socket: { ...client.options?.socket, reconnectStrategy: false },
        // Fail at once while disconnected, instead of queueing until a reconnect that never comes.
        disableOfflineQueue: true,
      })
      const watch = lostOnce(events)
      // node-redis throws an 'error' with no listener: this one also ends the connection.
      subscriber.on('error', (error: unknown) => watch.lost(asError(error)))
      subscriber.on('end', () => watch.lost(new Error('The Redis subscriber connection closed')))
      const listener: NodeRedisListener = (message, channel) => events.message(channel, message)
      try {
        await subscriber.connect()
      } catch (err) {
        watch.done()
        subscriber.destroy()
        throw err
      }
      watch.ready()
      return {
        subscribe: async (channels) => {
          await subscriber.subscribe(channels, listener)
        },
        unsubscribe: async (channel) => {
          await subscriber.unsubscribe(channel, listener)
        },
        close: () => {
          watch.done()
          subscriber.destroy()
        },
      }
    },
  }
}
