/**
 * Upgrade requests that a runtime hands over as a parsed HTTP head and the raw connection under
 * it (Node's `upgrade` event), answered through the app: the request's URL and its lazy
 * `Request`, the app's answer written on the connection or the accepted upgrade completed, and
 * the connections still being answered, which a shutdown's deadline tears down. Runtime-free:
 * the head and the connection are described by the little that is read of them.
 * @module
 */
import type { Connections, ShutdownOptions } from './connections.js'
import type { UpgradeRequest } from './port.js'
import {
  answerUpgrade,
  type ByteSink,
  headerLines,
  nextTurn,
  RequestView,
  writeResponse,
} from './serving.js'

/** The connection under a raw upgrade request: a {@link ByteSink} that can say a bit more. */
export interface RawSocket extends ByteSink {
  /** True over TLS: the request's URL is then `https:`. */
  readonly encrypted?: boolean
  /** True once the client ended its side. */
  readonly readableEnded?: boolean
  /** Puts bytes back to be read first (those that came after the head). */
  unshift(bytes: Uint8Array): void
  /** As {@link ByteSink.on}, and `'error'`: the connection failed. */
  on(event: 'drain' | 'close' | 'end' | 'error', listener: () => void): unknown
  /** As {@link ByteSink.off}, and `'error'`. */
  off(event: 'drain' | 'close' | 'end' | 'error', listener: () => void): unknown
}

/** An upgrade request's head, as the runtime parsed it (Node's `IncomingMessage`). */
export interface RawHead {
  /** The request target: a path, or an absolute URL. */
  readonly url?: string
  /** The method; GET when absent. */
  readonly method?: string
  /** The headers, names and values flat, as they came (repeated names kept). */
  readonly rawHeaders: readonly string[]
  /** The connection the request came on. */
  readonly socket: RawSocket
}

/**
 * The request's absolute URL: a `//evil/x` target stays a path, and a `Host` that would move it
 * elsewhere (a path, a user) is refused.
 * @throws TypeError for such a target or `Host`: answer it with 400
 */
export function rawUrl(head: RawHead): string {
  const target = head.url ?? '/'
  if (/^https?:\/\//i.test(target)) return new URL(target).href
  const raw = head.rawHeaders
  let host: string | undefined
  for (let i = 0; host === undefined && i + 1 < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() === 'host') host = raw[i + 1]
  }
  host ??= 'localhost'
  if (!target.startsWith('/') || /[\s/?#@\\]/.test(host)) {
    throw new TypeError(`Invalid request target or Host header: ${target} (Host: ${host})`)
  }
  return new URL(`${head.socket.encrypted ? 'https' : 'http'}://${host}${target}`).href
}

/** The `Request` of a raw head (see {@link RequestView}); its signal aborts when the client leaves. */
class RawRequest extends RequestView {
  readonly #head: RawHead
  constructor(head: RawHead) {
    super(rawUrl(head))
    this.#head = head
  }
  get method(): string {
    return this.#head.method ?? 'GET'
  }
  protected headerList(): readonly string[] {
    return this.#head.rawHeaders
  }
  protected override abortSignal(): AbortSignal {
    const controller = new AbortController()
    const socket = this.#head.socket
    const abort = () => controller.abort(new Error('The client closed the connection'))
    // A client that closed its side is gone too, as Node's own HTTP server takes it.
    if (socket.destroyed || socket.readableEnded) abort()
    else {
      socket.once('close', abort)
      socket.once('end', abort)
    }
    return controller.signal
  }
}

/**
 * The app's `Request` for a raw head: a {@link RequestView} over what the runtime parsed.
 * @throws TypeError for a target or `Host` that {@link rawUrl} refuses
 */
export function rawRequest(head: RawHead): Request {
  return new RawRequest(head) as unknown as Request
}

// The 101's own headers, which the runtime writes itself, and the placeholder's framing.
const OWN_HEADERS = new Set(['connection', 'upgrade', 'sec-websocket-accept'])
for (const name of ['extensions', 'protocol']) OWN_HEADERS.add(`sec-websocket-${name}`)
for (const name of ['content-length', 'content-type', 'transfer-encoding', 'keep-alive'])
  OWN_HEADERS.add(name)

const ignore = () => {}

/** How a runtime finishes what {@link RawUpgrades} leaves to it. */
export interface RawUpgradeRuntime {
  /** The app's fetch; `env` is the request's Hono `env`. */
  fetch(request: Request, env: never): unknown
  /** True when a 404 that accepted nothing is left to someone else (another listener). */
  passOn(): boolean
  /** Which requests this server answers; the others are left alone. @defaultValue every one */
  shouldHandle?: ((head: RawHead) => boolean) | undefined
  /**
   * Writes the 101 with `headers` (`name: value` lines, beside the handshake's own) and opens
   * the socket, calling `accepted.open` exactly once; from then on the runtime listens for the
   * connection's errors. False when the runtime gave up on the connection (no longer readable
   * and writable): the upgrade is then abandoned.
   */
  complete(accepted: UpgradeRequest, headers: string[], head: RawHead, socket: RawSocket): boolean
}

/**
 * The raw upgrade requests of one server: each is answered through the app (see
 * {@link answerUpgrade}), and the connections still being answered are known, for a
 * shutdown's deadline.
 */
export class RawUpgrades {
  readonly #answering = new Set<RawSocket>()

  /**
   * @param runtime - the runtime's side
   * @param reasons - the reason phrase of each status, for answers with no `statusText`
   */
  constructor(
    private readonly runtime: RawUpgradeRuntime,
    private readonly reasons: Readonly<Record<number, string | undefined>> = {},
  ) {}

  /**
   * Answers one upgrade request through the app, unless `shouldHandle` leaves it to others;
   * never throws. A target or `Host` that cannot make a URL gets 400; a failure is logged, and
   * the connection destroyed.
   * @param head - the request's head
   * @param socket - its connection
   * @param rest - the bytes that came after the head: the client's first frames, put back on the
   *   connection only if this server completes the upgrade
   * @param env - the app's `c.env` for the request
   */
  answer(head: RawHead, socket: RawSocket, rest: Uint8Array, env: object): void {
    try {
      if (this.runtime.shouldHandle && !this.runtime.shouldHandle(head)) return
    } catch (err) {
      // A throw from an event listener would crash the process.
      console.error('shouldHandle failed:', err)
      socket.destroy()
      return
    }
    // Until the runtime takes the connection, a reset by the client must not crash the process.
    socket.on('error', ignore)
    this.#answering.add(socket)
    // A client that leaves is forgotten at once, though the app may never answer its request.
    const release = () => this.#answering.delete(socket)
    socket.once('close', release)
    this.#answer(head, socket, rest, env)
      .catch((err) => {
        console.error('WebSocket upgrade failed:', err)
        socket.destroy()
      })
      .finally(() => {
        socket.off('close', release)
        release()
      })
  }

  /**
   * The graceful shutdown of a server whose hub may be shared (`Connections.shutdown`): the
   * server stops listening once its connections are closed, or at once when another server's
   * shutdown closed them already; at the deadline, the requests still being answered are
   * destroyed.
   * @param connections - the hub's connections
   * @param options - the shutdown's options
   * @param stopListening - stops the server, and calls back once it has stopped
   */
  async shutdown(
    connections: Connections,
    options: ShutdownOptions | undefined,
    stopListening: (done: () => void) => void,
  ): Promise<void> {
    let stopped = false
    await connections.shutdown(options, () => {
      stopped = true
      return new Promise<void>((done) => stopListening(done))
    })
    if (!stopped) stopListening(ignore)
    for (const socket of this.#answering) socket.destroy()
  }

  async #answer(head: RawHead, socket: RawSocket, rest: Uint8Array, env: object): Promise<void> {
    const method = head.method ?? 'GET'
    const write = (answer: Response) => writeResponse(socket, answer, method, this.reasons)
    let request: Request
    try {
      request = rawRequest(head)
    } catch {
      return write(new Response(null, { status: 400 }))
    }
    const runtime = this.runtime
    await answerUpgrade(runtime.fetch, request, env, {
      gone: () => socket.destroyed,
      write,
      passOn: () => runtime.passOn(),
      complete: (accepted, answer) => {
        const lines = headerLines(answer.headers, OWN_HEADERS)
        // Only now are the client's first frames ours: another `upgrade` listener that takes
        // the request gets the same bytes from the runtime and puts them back itself.
        if (rest.byteLength > 0) socket.unshift(rest)
        if (runtime.complete(accepted, lines, head, socket)) socket.off('error', ignore)
        else accepted.abandon()
      },
    })
  }
}

/** A connection that can hold its writes back and send them in one go (a Node stream's cork). */
export interface Corkable {
  /** How many times it is corked; 0 when its writes go out at once. */
  readonly writableCorked: number
  /** Holds the writes back. */
  cork(): void
  /** Sends what the matching `cork()` held back. */
  uncork(): void
}

let corked: Corkable[] = []
function uncorkAll(): void {
  const streams = corked
  corked = []
  for (const stream of streams) stream.uncork()
}

/**
 * Holds a connection's writes until this turn of the event loop ends, when every connection held
 * so is released at once: the messages of one turn then leave in one system call (`writev`)
 * instead of one each, which is most of the cost of a small message. Call it before each write.
 */
export function corkForTurn(stream: Corkable): void {
  if (stream.writableCorked > 0) return
  stream.cork()
  if (corked.push(stream) === 1) nextTurn(uncorkAll)
}
