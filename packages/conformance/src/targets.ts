/**
 * Targets (what the suite runs against) and the harness each one becomes: a way to connect,
 * send raw HTTP, and read the server's report.
 * @module
 */
import type { ShutdownOptions } from '@handshake/core'
import { createHub } from '@handshake/core/adapter'
import {
  connect,
  request as kitRequest,
  type TestPeer,
  UpgradeRejectedError,
} from '@handshake/core/testing'
import type { Hono } from 'hono'
import { createConformanceApp, type ServerReport } from './app.js'
import { type HttpAnswer, type RawRequest, rawRequest } from './http.js'
import {
  type ClientKind,
  type ControlledPeer,
  connectUndici,
  connectWs,
  type DialOptions,
  faultCode,
  Inbox,
  type Peer,
  PeerUpgradeRejected,
  type ProtocolFault,
  type ReceivedClose,
} from './peers.js'
import { RawPeer } from './raw-peer.js'

// --- targets ---

/**
 * What a runtime truly cannot do, each flag asserted both ways: where a flag is false, the suite
 * checks the documented difference instead of the behaviour.
 */
export interface RuntimeDifferences {
  /** The runtime can send pings: `conn.canPing` is true and `conn.ping()` resolves on a pong. */
  ping: boolean
  /**
   * The runtime can tear TCP down when the close-handshake timeout passes. Where false (workerd),
   * the server stops waiting and settles at the timeout, but the TCP socket may stay open.
   */
  terminateOnTimeout: boolean
  /**
   * `close()` waits for the peer's close frame. Where false (Bun: `ws.close()` writes the close
   * frame and a FIN and reports the end at once), `close()` resolves at once with the code it
   * sent, and the close-handshake timeout never comes into play.
   */
  awaitsCloseAnswer: boolean
  /**
   * The runtime can pause reading: a flood faster than `serve` reads is held by pausing and no
   * message is lost. Where false, the connection closes with 1008.
   */
  pauseInbound: boolean
  /** Headers from `upgradeHeaders` reach the client on the 101 response. */
  upgradeHeaders: boolean
  /**
   * Headers that middleware adds after the handler (`await next()`) reach the 101. Where false
   * (Bun writes the 101 inside `server.upgrade()`, before the middleware resumes), only
   * `upgradeHeaders` do.
   */
  middlewareHeaders: boolean
  /**
   * The runtime refuses a client frame that is not masked (RFC 6455 §5.1) with 1002. Where false
   * (Deno), the frame is read as a message and the connection goes on.
   */
  rejectsUnmasked: boolean
  /**
   * The runtime refuses invalid UTF-8 in a text message with 1007. Where false (workerd decodes
   * it with U+FFFD), the message is read with replacement characters and the connection goes on.
   */
  rejectsInvalidUtf8: boolean
  /**
   * A close frame the server sends reaches a peer that keeps sending data. Where false (Deno
   * resets the TCP connection on data after its close frame), a flooding peer may see 1006
   * instead of 1008; the server still ends with 1008.
   */
  closeReachesSendingPeer: boolean
  /**
   * The runtime says how much it holds unsent (`bufferedAmount`), so a subscriber that cannot
   * keep up is closed with 1008 past `maxPublishBuffer`, or has its messages dropped and
   * counted. Where false (workerd reads 0), it is never detected: the runtime holds everything
   * in memory and delivers it all once the peer reads again.
   */
  publishBound: boolean
  /**
   * The server keeps listening while its shutdown waits for the peers, so a new upgrade gets the
   * core's 503. Where false (Node and Bun stop listening first), a new connection is refused by
   * the operating system; an upgrade already on its way still gets the 503.
   */
  listensDuringShutdown: boolean
  /**
   * True where the runtime says nothing of an accepted upgrade whose client left before the 101
   * was written (Deno 2.9: no `open`, `error` or `close` event, and the request's signal does not
   * abort), so the adapter cannot tell the core that the socket will never open: a shutdown then
   * counts it until its deadline. Where absent or false, the adapter abandons it and a shutdown
   * does not wait for it.
   */
  silentAbandonedUpgrade?: boolean
  /**
   * The runtime checks the length a frame's header announces against `maxMessageSize` and
   * closes with 1009 before the payload arrives. Where false (Deno, workerd buffer the whole
   * message first, up to their own limits of 64 MiB and 32 MiB), the message is held whole in
   * memory before the core refuses it with 1009.
   */
  refusesOversizedEarly: boolean
}

/** A server running the conformance app. */
export interface RunningServer {
  /** Its base URL: `http://127.0.0.1:PORT`. */
  url: string
  /**
   * The base URL of a second server of the same process (Node, Bun, Deno) or a second Durable
   * Object (workerd), serving the same app: a second hub, for the isolation scenarios. It stops
   * with the first.
   */
  sibling: string
  /** Stops it and releases the port. */
  stop(): Promise<void>
  /**
   * Shuts it down gracefully with the adapter's own API (`server.shutdown(options)`), and
   * settles as that call does: an invalid option rejects with a `RangeError` (a server in a
   * child process sends its name and message back, and this rebuilds it).
   */
  shutdown(options?: ShutdownOptions): Promise<void>
  /**
   * Reads a connection's report without HTTP, for after the server stopped listening (a
   * shutdown). Without it, the report is fetched from `GET /report/:id`.
   */
  report?(id: string): Promise<ServerReport | undefined>
}

/**
 * A real runtime serving {@link createConformanceApp} with its adapter. The suite starts it
 * once, before its scenarios, and stops it after.
 */
export interface NetworkTarget {
  /** A name for the test titles, such as `'node'`. */
  name: string
  /** Starts the server on 127.0.0.1 and a free port. */
  start(): Promise<RunningServer>
  /** What the runtime cannot do. */
  differences: RuntimeDifferences
}

/** The built-in target that runs the scenarios in memory through the test kit. */
export interface MemoryTarget {
  name: string
  readonly memory: true
  differences: RuntimeDifferences
}

/** What {@link conformanceSuite} runs against. */
export type Target = NetworkTarget | MemoryTarget

/** The test kit's runtime can do everything: it pings, terminates and pauses. */
export const memoryTarget: MemoryTarget = Object.freeze({
  name: 'memory (test kit)',
  memory: true as const,
  differences: Object.freeze({
    ping: true,
    terminateOnTimeout: true,
    awaitsCloseAnswer: true,
    pauseInbound: true,
    upgradeHeaders: true,
    middlewareHeaders: true,
    rejectsUnmasked: true,
    rejectsInvalidUtf8: true,
    closeReachesSendingPeer: true,
    publishBound: true,
    listensDuringShutdown: true,
    refusesOversizedEarly: true,
  }),
})

/** Tells a memory target from a network one. */
export function isMemoryTarget(target: Target): target is MemoryTarget {
  return 'memory' in target && target.memory === true
}

// --- the harness ---

/** A target, ready to use: the scenarios only talk to this. */
export interface Harness {
  readonly kind: 'memory' | 'network'
  readonly differences: RuntimeDifferences
  /** The `Host` the server sees on this harness's requests. */
  readonly host: string
  /** Connects with the everyday client: `ws` on a network, the test kit in memory. */
  dial(path: string, options?: DialOptions): Promise<Peer>
  /** Connects with a peer that can misbehave: raw TCP on a network, the test kit in memory. */
  dialControlled(path: string, options?: DialOptions): Promise<ControlledPeer>
  /** Sends one HTTP request exactly as given and reads the whole answer. */
  request(path: string, request?: RawRequest): Promise<HttpAnswer>
  /** Sends an ordinary HTTP request, with a body, through `fetch` (or the app, in memory). */
  fetch(path: string, init?: RequestInit): Promise<Response>
  /**
   * Connects with a peer that reads nothing until `resume()`: a subscriber that cannot keep up.
   * Raw TCP on a network (the server's sends pile up in the kernel, then in the runtime), the
   * test kit's `stopReading()` in memory.
   */
  dialPaused(path: string): Promise<PausedPeer>
  /** The server's report for a connection id, or undefined when it has none yet. */
  report(id: string): Promise<ServerReport | undefined>
  /** Shuts the server down gracefully: see {@link RunningServer.shutdown}. */
  shutdown(options?: ShutdownOptions): Promise<void>
  /**
   * The same app on a second hub (a second server of the process, a second Durable Object): it
   * shares nothing with this one, and its shutdown is not this one's.
   */
  readonly sibling: Pick<Harness, 'dial' | 'fetch'>
  /** Drops every connection the scenarios left open. */
  cleanup(): Promise<void>
  /** Stops the server. */
  stop(): Promise<void>
}

/** A peer that reads nothing until {@link PausedPeer.resume}. */
export interface PausedPeer extends ControlledPeer {
  /** Starts reading: what the server sent meanwhile arrives, in order. */
  resume(): void
}

/** A network harness: it can also connect with a given client. */
export interface NetworkHarness extends Harness {
  readonly kind: 'network'
  /** The server's base URL. */
  readonly url: string
  /** Connects with a given client. */
  dialWith(
    client: Exclude<ClientKind, 'memory'>,
    path: string,
    options?: DialOptions,
  ): Promise<Peer>
  /** Connects with the raw TCP peer, to send frames by hand. */
  dialRaw(path: string, options?: DialOptions & { mask?: boolean }): Promise<RawPeer>
}

/** The memory harness: it gives the test kit's own peers too. */
export interface MemoryHarness extends Harness {
  readonly kind: 'memory'
  /** The app the kit connects to. */
  readonly app: Hono
  /** Connects and returns the test kit's peer itself. */
  connectKit(path: string, options?: DialOptions): Promise<TestPeer>
}

/** Keeps every peer a scenario opened, so that none outlives its test. */
class Peers {
  #open = new Set<Peer>()

  track<P extends Peer>(peer: P): P {
    this.#open.add(peer)
    void peer.closed.then(() => this.#open.delete(peer))
    return peer
  }

  async dropAll(): Promise<void> {
    const open = [...this.#open]
    this.#open.clear()
    for (const peer of open) peer.vanish()
    // Wait (briefly) for the drops to reach the server, so the next test starts clean.
    await Promise.race([
      Promise.all(open.map((peer) => peer.closed)),
      new Promise((resolve) => setTimeout(resolve, 1000)),
    ])
  }
}

/** Starts a network target and wraps it. */
export async function networkHarness(target: NetworkTarget): Promise<NetworkHarness> {
  const server = await target.start()
  const url = server.url.replace(/\/$/, '')
  const sibling = server.sibling.replace(/\/$/, '')
  const peers = new Peers()
  const dialWith = async (
    client: Exclude<ClientKind, 'memory'>,
    path: string,
    options?: DialOptions,
  ) => {
    const peer =
      client === 'ws'
        ? await connectWs(url, path, options)
        : client === 'undici'
          ? await connectUndici(url, path, options)
          : await RawPeer.connect(url, path, options)
    return peers.track(peer)
  }
  return {
    kind: 'network',
    differences: target.differences,
    url,
    host: new URL(url).host,
    dial: (path, options) => dialWith('ws', path, options),
    dialWith,
    dialControlled: async (path, options) => peers.track(await RawPeer.connect(url, path, options)),
    dialRaw: async (path, options) => peers.track(await RawPeer.connect(url, path, options)),
    request: (path, request) => rawRequest(url, path, request),
    fetch: (path, init) => fetch(`${url}${path}`, init),
    dialPaused: async (path) => peers.track(await RawPeer.connect(url, path, { paused: true })),
    async report(id) {
      if (server.report) return server.report(id)
      const response = await fetch(`${url}/report/${encodeURIComponent(id)}`)
      if (response.status === 404) return undefined
      return (await response.json()) as ServerReport
    },
    shutdown: (options) => server.shutdown(options),
    sibling: {
      dial: async (path, options) => peers.track(await connectWs(sibling, path, options)),
      fetch: (path, init) => fetch(`${sibling}${path}`, init),
    },
    cleanup: () => peers.dropAll(),
    stop: () => server.stop(),
  }
}

/** Wraps the test kit's peer into the suite's interface. */
function kitPeer(peer: TestPeer): ControlledPeer {
  const inbox = new Inbox()
  void (async () => {
    for (;;) {
      try {
        inbox.push(await peer.read())
      } catch {
        return
      }
    }
  })()
  const closed = peer.closed.then(({ code, reason }) => {
    inbox.end({ code, reason })
    return { code, reason }
  })
  // The kit's closeFrame never settles when no close frame was sent: the end settles it.
  const closeFrame = Promise.race<ReceivedClose | undefined>([
    peer.closeFrame.then((frame) => ({ ...frame, at: Date.now() })),
    peer.closed.then(() => new Promise((resolve) => setTimeout(() => resolve(undefined), 0))),
  ])
  return {
    client: 'memory',
    protocol: peer.protocol,
    headers: peer.response.headers,
    get answerClose() {
      return peer.answerClose
    },
    set answerClose(value: boolean) {
      peer.answerClose = value
    },
    get bufferedAmount() {
      return peer.pendingBytes
    },
    send: (data) => peer.send(data),
    read: (timeoutMs) => inbox.read(timeoutMs),
    close: (code, reason) => peer.close(code, reason),
    closed,
    closeFrame,
    ended: peer.closed.then(() => Date.now()),
    // The kit delivers only whole messages: vanishing mid-message is vanishing.
    vanishMidMessage: () => peer.vanish(),
    vanish: () => peer.vanish(),
    fault: (kind: ProtocolFault) => peer.fault(faultCode[kind], `conformance fault: ${kind}`),
    get closeFramesReceived() {
      return peer.closeFrames.length
    },
  }
}

/** Makes the memory harness: the conformance app, connected through the test kit. */
export function memoryHarness(target: MemoryTarget = memoryTarget): MemoryHarness {
  const app = createConformanceApp()
  const peers = new Peers()
  // The "server": the hub its connections join, and its HTTP routes reach; and a second one.
  const hub = createHub()
  const siblingHub = createHub()
  const connectTo = async (path: string, options: DialOptions, to: typeof hub) => {
    try {
      return await connect(app, path, {
        headers: options.headers,
        protocols: options.protocols,
        answerClose: options.answerClose,
        endsInClose: options.endsInClose,
        hub: to,
      })
    } catch (err) {
      if (!(err instanceof UpgradeRejectedError)) throw err
      const { status, headers } = err.response
      throw new PeerUpgradeRejected(status, headers, await err.response.text())
    }
  }
  const connectKit = (path: string, options: DialOptions = {}) => connectTo(path, options, hub)
  const dial = async (path: string, options?: DialOptions) =>
    peers.track(kitPeer(await connectKit(path, options)))
  const dialPaused = async (path: string): Promise<PausedPeer> => {
    const peer = await connectKit(path)
    peer.stopReading()
    return peers.track(Object.assign(kitPeer(peer), { resume: () => peer.startReading() }))
  }
  return {
    kind: 'memory',
    differences: target.differences,
    app,
    host: 'localhost',
    connectKit,
    dial,
    dialControlled: dial,
    dialPaused,
    fetch: (path, init) => kitRequest(app, path, init, { hub }),
    async request(path, request = {}) {
      const headers = new Headers(request.headers)
      if (!headers.has('host')) headers.set('Host', 'localhost')
      const response = await kitRequest(
        app,
        path,
        { method: request.method ?? 'GET', headers },
        { hub },
      )
      return { status: response.status, headers: response.headers, body: await response.text() }
    },
    async report(id) {
      const response = await kitRequest(app, `/report/${encodeURIComponent(id)}`, {}, { hub })
      if (response.status === 404) return undefined
      return (await response.json()) as ServerReport
    },
    shutdown: (options) => hub.connections.shutdown(options),
    sibling: {
      dial: async (path, options = {}) =>
        peers.track(kitPeer(await connectTo(path, options, siblingHub))),
      fetch: (path, init) => kitRequest(app, path, init, { hub: siblingHub }),
    },
    cleanup: () => peers.dropAll(),
    stop: async () => {},
  }
}
