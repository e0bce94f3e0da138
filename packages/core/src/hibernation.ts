/**
 * Hibernation, runtime-free: the bookkeeping of sockets that stay open while the runtime drops
 * the isolate's memory (a Durable Object's Hibernation API). Each socket stores the core's
 * snapshot as its attachment; after a wake, every socket's `Conn` is rebuilt from it before the
 * first event or publish. An adapter maps its runtime's socket and events onto this.
 * @module
 */
import type { Hono } from 'hono'
import type { Hub } from './hub.js'
import type { ConnSnapshot, RuntimeSocket, SocketEvents, UpgradeRequest } from './port.js'
import { assertAttachmentFits } from './serialized.js'
import { findUpgrader, type Upgrader } from './upgrade.js'

/** A socket of a hibernation API, as far as the core uses it. */
export interface HibernatableSocket {
  /** The WebSocket `readyState`: 1 while open. */
  readonly readyState: number
  /** Sends a message. */
  send(data: string | ArrayBuffer | ArrayBufferView): void
  /** Sends a close frame. */
  close(code?: number, reason?: string): void
  /** Stores a value with the socket, kept across hibernations. */
  serializeAttachment(value: unknown): void
  /** The value stored with the socket. */
  deserializeAttachment(): unknown
}

/** What the socket stores: the core's snapshot, marked as ours. */
interface Attachment extends ConnSnapshot {
  /** The format's version; an attachment without it was not written by Handshake. */
  readonly handshake: 1
  /**
   * The URL the object was asked for, when the route saw another one (a sub-app mounted with
   * `mount()` sees its own path): the wake looks the route up with it.
   */
  readonly objectUrl?: string
}

function isAttachment(value: unknown): value is Attachment {
  return typeof value === 'object' && value !== null && (value as Attachment).handshake === 1
}

const describe = (err: unknown): string => (err instanceof Error ? err.message : String(err))

/** What {@link Hibernation} needs of the object that holds the sockets. */
export interface HibernationHost<W> {
  /** The app whose routes accepted the sockets; undefined until the subclass has set it. */
  // biome-ignore lint/suspicious/noExplicitAny: any app, whatever its env and schema
  app(): Hono<any, any, any> | undefined
  /** The hub the connections belong to. */
  readonly hub: Hub
  /** The Hono `env` the app is served with. */
  env(): object
  /** Every socket the runtime still holds for the object. */
  sockets(): Iterable<W>
  /** A socket that cannot wake: close it with 1011. */
  fail(ws: W): void
}

/**
 * The sockets of one hibernating object, for this incarnation of it: their `SocketEvents`, woken
 * on first use. One per object.
 */
export class Hibernation<W extends HibernatableSocket> {
  readonly #host: HibernationHost<W>
  readonly #sockets = new WeakMap<W, SocketEvents>()
  readonly #upgraders = new Map<string, Upgrader | undefined>()
  #restored = false

  /** @param host - the object that holds the sockets */
  constructor(host: HibernationHost<W>) {
    this.#host = host
  }

  /**
   * Once per incarnation, before anything else: rebuilds the `Conn` of every socket accepted
   * before the last hibernation, so that each is in its topics before the first event or
   * publish is dispatched. Nothing before the app is set (a use of topics in a constructor).
   */
  restore(): void {
    if (this.#restored || !this.#host.app()) return
    this.#restored = true
    for (const ws of this.#host.sockets()) if (!this.#sockets.has(ws)) this.#wake(ws)
  }

  /** The core's side of a socket, woken first if the object was rebuilt since it was accepted. */
  events(ws: W): SocketEvents | undefined {
    this.restore()
    return this.#sockets.get(ws)
  }

  /** The socket ended: its events are forgotten once told. */
  forget(ws: W): void {
    this.#sockets.delete(ws)
  }

  /**
   * Opens the connection of a socket the runtime accepted for hibernation.
   * @param objectUrl - the URL the object was asked for, when the route saw another one
   */
  accept(ws: W, request: UpgradeRequest, objectUrl: string | undefined): void {
    const routedAs = objectUrl === request.url ? undefined : objectUrl
    this.#sockets.set(ws, request.open(this.#socket(ws, routedAs)))
  }

  #wake(ws: W): void {
    let attachment: unknown
    try {
      attachment = ws.deserializeAttachment()
    } catch {
      attachment = undefined
    }
    // A socket the app accepted itself: not ours to serve.
    if (!isAttachment(attachment)) return
    const { handshake: _, objectUrl, ...snapshot } = attachment
    try {
      const upgrader = this.#upgraderFor(objectUrl ?? snapshot.url)
      this.#sockets.set(ws, upgrader.wake(this.#socket(ws, objectUrl), snapshot, this.#host.hub))
    } catch (err) {
      console.error('A hibernated WebSocket could not be woken:', err)
      this.#host.fail(ws)
    }
  }

  /** The upgrader of the route that accepted `url`, found in the app however it is composed. */
  #upgraderFor(url: string): Upgrader {
    const path = new URL(url).pathname
    if (!this.#upgraders.has(path)) {
      const app = this.#host.app() as NonNullable<ReturnType<HibernationHost<W>['app']>>
      this.#upgraders.set(path, findUpgrader(app, url, this.#host.env()))
    }
    const upgrader = this.#upgraders.get(path)
    if (!upgrader) {
      throw new Error(
        `No upgrade() handler of the app serves ${path} any more, so its sockets cannot wake: register the route with upgrade(controller), made once and not per request, and let no middleware answer or await before it`,
      )
    }
    return upgrader
  }

  /** A hibernatable socket, as the core sees it. */
  #socket(ws: W, objectUrl: string | undefined): RuntimeSocket {
    return {
      send(data) {
        // A socket that is closing cannot send; the core learns of the end from its event.
        if (ws.readyState === 1) ws.send(data)
      },
      close(code, reason) {
        ws.close(code, reason)
      },
      // A hibernation API reports no bufferedAmount, and cannot pause or ping.
      bufferedAmount: 0,
      emitsDrain: false,
      // The platform ends the handshake and reports it whenever that is: a timer of ours would
      // keep the object awake.
      closesHandshake: true,
      // Such a socket cannot be torn down. When the core gives up on one (a shutdown's
      // deadline), its connection has ended: the socket is forgotten, so that no later event
      // reaches it and no wake brings it back (its attachment is cleared). The TCP connection
      // stays until the peer or the platform ends it.
      terminate: () => {
        this.#sockets.delete(ws)
        try {
          ws.serializeAttachment(null)
        } catch {
          // Already gone: nothing left to forget.
        }
      },
      persist(snapshot) {
        const attachment: Attachment =
          objectUrl === undefined
            ? { handshake: 1, ...snapshot }
            : { handshake: 1, objectUrl, ...snapshot }
        // Measured as the runtime measures it (its own serialization, not JSON), so that the
        // documented RangeError comes first; conn.data was measured on assignment.
        assertAttachmentFits(attachment)
        try {
          ws.serializeAttachment(attachment)
        } catch (err) {
          // A value V8 holds in a longer form than the count assumed (see serializedSize), or
          // one the runtime refuses: the same documented error, rather than the runtime's own.
          throw new RangeError(
            `The connection's state could not be stored with the socket (${describe(err)}): keep conn.data and the topics small and plain`,
          )
        }
      },
    }
  }
}
