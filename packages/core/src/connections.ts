/**
 * The connection registry and the graceful shutdown, written once for every runtime.
 * @module
 */
import { assertSendableClose, CloseCode } from './close.js'
import type { Conn } from './conn.js'
import { ADD, DELETE, ENDED, TERMINATE, UPGRADING } from './internal.js'

/** Options of a graceful shutdown. The same on every runtime. */
export interface ShutdownOptions {
  /**
   * The close code sent to every open connection.
   * @defaultValue 1001 (Going Away)
   */
  code?: number
  /**
   * The close reason sent with it, at most 123 UTF-8 bytes.
   * @defaultValue 'Server shutting down'
   */
  reason?: string
  /**
   * The deadline of the whole shutdown, in milliseconds. Connections whose peers have not
   * answered by then are torn down, and the shutdown resolves.
   * @defaultValue 10000
   */
  timeout?: number
}

/** The close reason of a graceful shutdown. */
export const ShutdownMessage = 'Server shutting down'

/** The default deadline of a graceful shutdown, in milliseconds. */
export const DEFAULT_SHUTDOWN_TIMEOUT = 10_000

const noop = () => {}

/**
 * The open connections of one hub (a server, a Worker, a Durable Object), and their graceful
 * shutdown. Reach them with `getHub(c).connections`, or `conn.hub.connections`.
 *
 * Every {@link Conn} joins its hub's registry when it opens and leaves it when it closes.
 */
export class Connections implements Iterable<Conn> {
  readonly #open = new Set<Conn>()
  // Closed connections whose `serve` or `close` handler still runs: a shutdown waits for them.
  readonly #ending = new Set<Conn>()
  // Upgrades accepted and not yet open (between the adapter's upgrade and `open`): a shutdown
  // waits for them to open, and closes them then.
  readonly #upgrading = new Set<object>()
  #shutdown: Required<ShutdownOptions> | undefined
  #done: Promise<void> | undefined
  // Wakes a shutdown that waits for the sets above to empty.
  #wake: (() => void) | undefined

  /** How many connections are open. */
  get size(): number {
    return this.#open.size
  }

  /** False once a shutdown has started: new upgrades are then refused with 503. */
  get accepting(): boolean {
    return this.#shutdown === undefined
  }

  /** Iterates the open connections. */
  [Symbol.iterator](): Iterator<Conn> {
    return this.#open.values()
  }

  /**
   * Shuts down gracefully, once however often it is called, and resolves by its deadline,
   * whatever the app or the peers do:
   *
   * 1. it checks `code` and `reason` first: an invalid one rejects with a `RangeError`, and
   *    nothing is sent, refused or stopped;
   * 2. from then on, new upgrades are refused with 503 and the JSON body;
   * 3. `stopListening` runs (the adapter's "stop accepting connections");
   * 4. every open connection gets one close frame, through its close handshake (a paused
   *    socket is resumed, so the peer's answer can be read), and so does any connection whose
   *    upgrade was on its way (accepted, not yet open) or completes during the shutdown;
   * 5. it waits for the handshakes, for the upgrades on their way to open, for every `serve`
   *    to settle and every `close` handler to finish, and for `stopListening`, under one
   *    deadline for the whole shutdown; then tears down whatever is left and resolves (a
   *    `serve` that ignores its connection's end is left running).
   *
   * @param options - see {@link ShutdownOptions}
   * @param stopListening - the adapter's own stop; its failure is ignored past the deadline
   */
  shutdown(options: ShutdownOptions = {}, stopListening?: () => unknown): Promise<void> {
    if (this.#done) return this.#done
    const settings: Required<ShutdownOptions> = {
      code: options.code ?? CloseCode.GoingAway,
      reason: options.reason ?? ShutdownMessage,
      timeout: options.timeout ?? DEFAULT_SHUTDOWN_TIMEOUT,
    }
    try {
      assertSendableClose(settings.code, settings.reason)
      if (!Number.isFinite(settings.timeout) || settings.timeout < 0) {
        throw new RangeError(
          `Invalid shutdown timeout ${settings.timeout}: give a number of milliseconds, 0 or more`,
        )
      }
    } catch (err) {
      return Promise.reject(err)
    }
    this.#shutdown = settings
    this.#done = this.#run(settings, stopListening)
    return this.#done
  }

  async #run(settings: Required<ShutdownOptions>, stopListening?: () => unknown): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, settings.timeout)
    })
    let stopped: Promise<unknown> = Promise.resolve()
    try {
      stopped = Promise.resolve(stopListening?.()).catch(noop)
    } catch {
      // A throwing stop must not stop the shutdown.
    }
    for (const conn of this.#open) void conn.close(settings.code, settings.reason)
    // Connections that open during the wait are closed in add(); wait until none is left, and
    // no upgrade, `serve` or `close` handler is still on its way.
    const allClosed = (async () => {
      while (this.#open.size > 0 || this.#ending.size > 0 || this.#upgrading.size > 0) {
        await new Promise<void>((resolve) => {
          this.#wake = resolve
        })
      }
      await stopped
    })()
    await Promise.race([allClosed, deadline])
    clearTimeout(timer)
    this.#wake = undefined
    for (const conn of this.#open) {
      conn[TERMINATE](`The peer did not answer the shutdown within ${settings.timeout} ms`)
    }
  }

  /** @internal A connection opened. During a shutdown, it is closed at once. */
  [ADD](conn: Conn): void {
    this.#open.add(conn)
    const shutdown = this.#shutdown
    // After the adapter has wired the socket's events: it is still inside open() here.
    if (shutdown) queueMicrotask(() => void conn.close(shutdown.code, shutdown.reason))
  }

  /**
   * @internal A connection closed. Until it has ended, its `serve` or `close`
   * handler still runs.
   */
  [DELETE](conn: Conn): void {
    if (!this.#open.delete(conn)) return
    this.#ending.add(conn)
    this.#changed()
  }

  /** @internal A closed connection's `serve` settled, or its `close` handler finished. */
  [ENDED](conn: Conn): void {
    if (this.#ending.delete(conn)) this.#changed()
  }

  /**
   * @internal An upgrade was accepted: it counts until its socket opens (its connection joins
   * with the registry first) or it is given up. Returns the call that ends it, which
   * only acts once.
   */
  [UPGRADING](): () => void {
    const upgrade = {}
    this.#upgrading.add(upgrade)
    return () => {
      if (this.#upgrading.delete(upgrade)) this.#changed()
    }
  }

  #changed(): void {
    const wake = this.#wake
    this.#wake = undefined
    wake?.()
  }
}
