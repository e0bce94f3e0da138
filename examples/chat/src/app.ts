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
  CloseError,
  type Conn,
  type Controller,
  type ErrorHandler,
  topics,
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

const say = (topic: string, event: ServerEvent) => topics.publish(topic, JSON.stringify(event))

/** The chat's controller: one `serve` loop per connection, its room a topic. */
export class ChatController implements Controller, ErrorHandler {
  async serve(conn: Conn, c: Context): Promise<void> {
    const room = c.req.param('room') ?? ''
    const name = (c.req.query('name') ?? '').trim()
    // Refused after the upgrade rather than with a 400: a browser never shows a failed
    // upgrade's status to the page, but it does show a close code and reason.
    const refusal = checkName(name) ?? checkRoom(room)
    if (refusal) return conn.close(CloseCode.PolicyViolation, refusal)

    const topic = roomTopic(room)
    // Once it resolves the room reaches this connection, on every instance: the join notice
    // that follows reaches the newcomer too.
    await conn.subscribe(topic)
    say(topic, { type: 'join', name })
    try {
      for await (const msg of conn) {
        // `return conn.close()` sends the close frame at once, and the `finally` below runs
        // before the handshake completes, so the room hears the leave without waiting.
        if (msg.type === 'binary') {
          return conn.close(CloseCode.UnsupportedData, 'Binary messages are not supported')
        }
        const message = parseMessage(msg.data)
        if (message === undefined) {
          return conn.close(
            CloseCode.InvalidFramePayloadData,
            `Expected JSON {"text": "..."} with 1 to ${MAX_TEXT_LENGTH} characters`,
          )
        }
        // Publishing never waits on a member: one that cannot keep up is closed with 1008
        // past MAX_BUFFERED_BYTES (the upgrader's maxPublishBuffer) and the room goes on.
        if ('here' in message) say(topic, { type: 'here', name })
        else say(topic, { type: 'message', name, text: message.text })
      }
    } finally {
      // However the loop ended (the peer left, a refusal, an abnormal end), the connection has
      // left the topic or leaves it now, and the room hears it.
      say(topic, { type: 'leave', name })
    }
  }

  /** A peer that vanished (1006) or broke the protocol is routine for a chat: one line, no stack. */
  onError(c: Context, err: unknown): void {
    if (err instanceof CloseError) console.warn(`${c.req.path}: ${err.message}`)
    else console.error(err)
  }
}

// After a backplane outage, messages published elsewhere meanwhile (joins, leaves) never
// arrived here: every room held here asks its members to list themselves again.
topics.addEventListener('restore', () => {
  for (const topic of topics.names()) say(topic, { type: 'rollcall' })
})

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
