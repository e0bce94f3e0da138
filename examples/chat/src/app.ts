/**
 * The chat: one Hono app, identical on Node, Bun, Deno and Workers. It serves the page at `/` and
 * the rooms at `/ws/:room?name=...`. Only the entry files (`node.ts`, `bun.ts`, `deno.ts`,
 * `worker.ts`) differ.
 *
 * A room is a topic (`room:<name>`): the server keeps no list of rooms or members. With a
 * backplane (Redis, when `REDIS_URL` is set in `node.ts`), the rooms span every process.
 *
 * The protocol, all JSON text messages:
 *
 * - client to server: `{"text": "hello"}`, and `{"here": true}` to answer a roll call;
 * - server to the room: `{"type": "join" | "leave" | "here", "name"}`,
 *   `{"type": "message", "name", "text"}` (the sender included), and `{"type": "rollcall"}`.
 *
 * Members come from the room itself, since no process knows them all: a page that sees someone
 * join answers `{"here": true}`, which the room hears as `here`, so the newcomer learns who is
 * there. After a backplane outage the server asks for a roll call, so every page can rebuild
 * its list from the answers.
 *
 * Input the server refuses closes that connection only, with a code and a reason the page shows:
 *
 * | input | close |
 * | --- | --- |
 * | a name (the `name` query parameter) empty or over {@link MAX_NAME_LENGTH} characters, or a room name that is not 1 to {@link MAX_ROOM_LENGTH} letters, digits, `-` or `_` | 1008 Policy Violation |
 * | a text message that is not JSON `{"text": "<1 to MAX_TEXT_LENGTH characters>"}` or `{"here": true}` | 1007 Invalid Frame Payload Data |
 * | a binary message | 1003 Unsupported Data |
 * | a message over {@link MAX_MESSAGE_BYTES} bytes | 1009 Message Too Big (the core's `maxMessageSize`) |
 * | a reader so slow that {@link MAX_BUFFERED_BYTES} pile up for it | 1008 Policy Violation (the core's `maxPublishBuffer`) |
 * @module
 */
import {
  CloseCode,
  type CloseError,
  type Conn,
  type ErrorHandler,
  type EventController,
  isCloseError,
  type Message,
  type Topics,
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
  | { type: 'join' | 'leave' | 'here'; name: string }
  | { type: 'message'; name: string; text: string }
  | { type: 'rollcall' }

/** What a client sends. */
type ClientMessage = { text: string } | { here: true }

/** The topic of a room. */
export const roomTopic = (room: string) => `room:${room}`

/** What each connection remembers: stored with its socket, so it survives a hibernation. */
export interface Member {
  room: string
  name: string
}

/** Tells the whole room, the member included (`conn.publish` skips the sender). */
function say(conn: Conn<Member>, event: ServerEvent): void {
  const data = JSON.stringify(event)
  conn.publish(roomTopic(conn.data.room), data)
  void conn.send(data)
}

/**
 * The chat's controller: an event controller, the same on every runtime. What it knows of a
 * member is in `conn.data` and the room is a topic, so on Workers the room's Durable Object can
 * hibernate between messages and wake with everything.
 */
export class ChatController implements EventController<Member>, ErrorHandler {
  async open(conn: Conn<Member>, c: Context): Promise<void> {
    const room = c.req.param('room') ?? ''
    const name = (c.req.query('name') ?? '').trim()
    // Refused after the upgrade rather than with a 400: a browser never shows a failed
    // upgrade's status to the page, but it does show a close code and reason.
    const refusal = checkName(name) ?? checkRoom(room)
    if (refusal) {
      void conn.close(CloseCode.PolicyViolation, refusal)
      return
    }
    conn.data = { room, name }
    // Once it resolves the room reaches this connection, on every instance.
    await conn.subscribe(roomTopic(room))
    say(conn, { type: 'join', name })
  }

  message(conn: Conn<Member>, msg: Message): void {
    // A refused connection is closing: it never joined.
    if (!conn.data) return
    if (msg.type === 'binary') {
      void conn.close(CloseCode.UnsupportedData, 'Binary messages are not supported')
      return
    }
    const message = parseMessage(msg.data)
    if (message === undefined) {
      void conn.close(
        CloseCode.InvalidFramePayloadData,
        `Expected JSON {"text": "..."} with 1 to ${MAX_TEXT_LENGTH} characters`,
      )
      return
    }
    // Publishing never waits on a member: one that cannot keep up is closed with 1008 past
    // MAX_BUFFERED_BYTES (the upgrader's maxPublishBuffer) and the room goes on.
    if ('here' in message) say(conn, { type: 'here', name: conn.data.name })
    else say(conn, { type: 'message', name: conn.data.name, text: message.text })
  }

  /** However it ended, the member has left the topic, and the room hears it. */
  close(conn: Conn<Member>, err: CloseError): void {
    if (!conn.data) return
    // A vanished peer (1006), a slow one dropped (1008): routine for a chat, one line.
    if (!isCloseError(err)) console.warn(`${new URL(conn.url).pathname}: ${err.message}`)
    say(conn, { type: 'leave', name: conn.data.name })
  }

  /** A handler that failed: logged (the connection closes with 1011). */
  onError(c: Context, err: unknown): void {
    console.error(`${c.req.path}:`, err)
  }
}

/**
 * After a backplane outage, messages published elsewhere meanwhile (joins, leaves) never
 * arrived here: every room held here asks its members to list themselves again. Call it once
 * for the server's topics (`server.topics`) when they get a backplane.
 */
export function rollCallAfterOutage(topics: Topics): void {
  topics.addEventListener('restore', () => {
    const rollcall = JSON.stringify({ type: 'rollcall' } satisfies ServerEvent)
    for (const topic of topics.names()) topics.publish(topic, rollcall)
  })
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

/**
 * The client's message, or undefined when it is neither `{"text": "<1 to 1000 chars>"}` nor
 * `{"here": true}`.
 */
function parseMessage(data: string): ClientMessage | undefined {
  let value: unknown
  try {
    value = JSON.parse(data)
  } catch {
    return undefined
  }
  if (typeof value !== 'object' || value === null) return undefined
  if ('here' in value) return value.here === true ? { here: true } : undefined
  if (!('text' in value)) return undefined
  const text = typeof value.text === 'string' ? value.text.trim() : ''
  return text !== '' && [...text].length <= MAX_TEXT_LENGTH ? { text } : undefined
}

/** The app: the page at `/`, the rooms at `/ws/:room`. */
export const app = new Hono()
app.get('/', (c) => c.html(PAGE))
app.get(
  '/ws/:room',
  upgrade(new ChatController(), {
    maxMessageSize: MAX_MESSAGE_BYTES,
    maxPublishBuffer: MAX_BUFFERED_BYTES,
  }),
)
