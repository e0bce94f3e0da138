/**
 * The chat: one Hono app, identical on Node, Bun, Deno and Workers. It serves the page at `/` and
 * the rooms at `/ws/:room?name=...`. Only the entry files (`node.ts`, `bun.ts`, `deno.ts`,
 * `worker.ts`) differ.
 *
 * The protocol, all JSON text messages:
 *
 * - client to server: `{"text": "hello"}`;
 * - server to client: `{"type": "join" | "leave", "name", "members"}` and
 *   `{"type": "message", "name", "text"}`, sent to everyone in the room, the sender included.
 *
 * Input the server refuses closes that connection only, with a code and a reason the page shows:
 *
 * | input | close |
 * | --- | --- |
 * | a name (the `name` query parameter) empty or over {@link MAX_NAME_LENGTH} characters, or a room name that is not 1 to {@link MAX_ROOM_LENGTH} letters, digits, `-` or `_` | 1008 Policy Violation |
 * | a text message that is not JSON `{"text": "<1 to MAX_TEXT_LENGTH characters>"}` | 1007 Invalid Frame Payload Data |
 * | a binary message | 1003 Unsupported Data |
 * | a message over {@link MAX_MESSAGE_BYTES} bytes | 1009 Message Too Big (the core's `maxMessageSize`) |
 * | a reader so slow that {@link MAX_BUFFERED_BYTES} pile up for it | 1008 Policy Violation |
 * @module
 */
import {
  CloseCode,
  CloseError,
  type Conn,
  type Controller,
  type ErrorHandler,
  upgrade,
} from '@handshake/core'
import { type Context, Hono } from 'hono'
import { PAGE } from './page.ts'

/** The longest user name, in characters (code points), after trimming spaces. */
export const MAX_NAME_LENGTH = 32
/** The longest room name, in characters. */
export const MAX_ROOM_LENGTH = 32
/** The longest chat message, in characters. */
export const MAX_TEXT_LENGTH = 1000
/** The largest WebSocket message the server reads; bigger ones close the connection with 1009. */
export const MAX_MESSAGE_BYTES = 8 * 1024
/** How many unsent bytes a member may hold before it is dropped as too slow. */
export const MAX_BUFFERED_BYTES = 1024 * 1024

const ROOM_PATTERN = /^[\w-]+$/

/** What the server sends. */
export type ServerEvent =
  | { type: 'join' | 'leave'; name: string; members: string[] }
  | { type: 'message'; name: string; text: string }

/**
 * The chat's controller: one `serve` loop per connection, and a registry of rooms, each a map of
 * its connections to their user names.
 */
export class ChatController implements Controller, ErrorHandler {
  /** The open rooms: room name to its members (connection to user name). Empty rooms are removed. */
  readonly rooms = new Map<string, Map<Conn, string>>()

  async serve(conn: Conn, c: Context): Promise<void> {
    const room = c.req.param('room') ?? ''
    const name = (c.req.query('name') ?? '').trim()
    // Refused after the upgrade rather than with a 400: a browser never shows a failed
    // upgrade's status to the page, but it does show a close code and reason.
    const refusal = checkName(name) ?? checkRoom(room)
    if (refusal) return conn.close(CloseCode.PolicyViolation, refusal)

    const members = this.rooms.get(room) ?? new Map<Conn, string>()
    this.rooms.set(room, members)
    members.set(conn, name)
    this.#broadcast(members, { type: 'join', name, members: [...members.values()] })
    try {
      for await (const msg of conn) {
        // `return conn.close()` sends the close frame at once, and the `finally` below runs
        // before the handshake completes, so the room hears the leave without waiting.
        if (msg.type === 'binary') {
          return conn.close(CloseCode.UnsupportedData, 'Binary messages are not supported')
        }
        const text = parseText(msg.data)
        if (text === undefined) {
          return conn.close(
            CloseCode.InvalidFramePayloadData,
            `Expected JSON {"text": "..."} with 1 to ${MAX_TEXT_LENGTH} characters`,
          )
        }
        this.#broadcast(members, { type: 'message', name, text })
      }
    } finally {
      // However the loop ended (the peer left, a refusal, an abnormal end), the room hears it.
      members.delete(conn)
      if (members.size === 0) this.rooms.delete(room)
      else this.#broadcast(members, { type: 'leave', name, members: [...members.values()] })
    }
  }

  /** A peer that vanished (1006) or broke the protocol is routine for a chat: one line, no stack. */
  onError(c: Context, err: unknown): void {
    if (err instanceof CloseError) console.warn(`${c.req.path}: ${err.message}`)
    else console.error(err)
  }

  #broadcast(members: Map<Conn, string>, event: ServerEvent): void {
    const data = JSON.stringify(event)
    for (const member of members.keys()) {
      // Not awaited: one slow reader must not hold up the room. A member whose unsent bytes
      // pile up past the bound is dropped instead of growing the server's memory.
      if (member.bufferedAmount > MAX_BUFFERED_BYTES) {
        void member.close(CloseCode.PolicyViolation, 'Too slow: messages are piling up')
      } else {
        void member.send(data)
      }
    }
  }
}

function checkName(name: string): string | undefined {
  if (name === '') return 'A name is required: connect to /ws/<room>?name=<your name>'
  if ([...name].length > MAX_NAME_LENGTH) {
    return `The name is too long: at most ${MAX_NAME_LENGTH} characters`
  }
  return undefined
}

function checkRoom(room: string): string | undefined {
  if (room.length > MAX_ROOM_LENGTH || !ROOM_PATTERN.test(room)) {
    return `The room name must be 1 to ${MAX_ROOM_LENGTH} letters, digits, - or _`
  }
  return undefined
}

/** The text of a client message, or undefined when it is not `{"text": "<1 to 1000 chars>"}`. */
function parseText(data: string): string | undefined {
  let value: unknown
  try {
    value = JSON.parse(data)
  } catch {
    return undefined
  }
  if (typeof value !== 'object' || value === null || !('text' in value)) return undefined
  const text = typeof value.text === 'string' ? value.text.trim() : ''
  return text !== '' && [...text].length <= MAX_TEXT_LENGTH ? text : undefined
}

/** The app: the page at `/`, the rooms at `/ws/:room`. */
export const app = new Hono()
app.get('/', (c) => c.html(PAGE))
app.get('/ws/:room', upgrade(new ChatController(), { maxMessageSize: MAX_MESSAGE_BYTES }))
