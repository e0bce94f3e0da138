/**
 * The chat: one Hono app, identical on Node, Bun, Deno and Workers (only the entry files
 * differ). It serves the page at `/`, its script at `/chat.js` (`src/browser.ts`, bundled by
 * `pnpm build`), and the chat's channels at `/ws?name=...` for `@handshake/client`:
 *
 * - `rooms/<room>`: the room's messages. A page publishes `{ text }`; the others get
 *   `{ name, text }`. Each room keeps its last {@link HISTORY_SIZE} messages
 *   ({@link useRoomHistory}), so a page that reconnects gets what it missed, once, in order.
 *   Its members are its subscribers, each listed with its name (the topic's `presence`): a page
 *   gets the list when it subscribes, then who joins and leaves, from every process that shares
 *   the rooms (through Redis on Node) and across a Durable Object's hibernation on Workers. A
 *   member leaves when it unsubscribes or its connection ends, however it ends.
 * - the request `rooms`: the rooms with someone in them on this server, and how many.
 * @module
 */
import { type Topics, upgrade } from '@handshake/core'
import { CHANNEL_PROTOCOL, ChannelError, Channels, channelFrame } from '@handshake/core/channels'
import { Hono } from 'hono'
import { z } from 'zod'
import { CHAT_JS } from '../dist/browser.js'
import { PAGE } from './page.ts'

/** The longest user name, in characters (code points), after trimming spaces. */
export const MAX_NAME_LENGTH = 32
const TOO_LONG = `The name is too long: at most ${MAX_NAME_LENGTH} characters`
/** The longest room name, in characters. */
export const MAX_ROOM_LENGTH = 32
/** The longest chat message, in characters. */
export const MAX_TEXT_LENGTH = 1000
/** The largest WebSocket message the server reads; bigger ones close the connection with 1009. */
export const MAX_MESSAGE_BYTES = 8 * 1024
/** How many unsent bytes a member may hold before it is dropped as too slow. */
export const MAX_BUFFERED_BYTES = 1024 * 1024
/** How many messages of each room are kept for the pages that reconnect. */
export const HISTORY_SIZE = 100
/** How long, in ms, a room's messages are kept after its last one. */
export const HISTORY_TTL = 10 * 60_000

/** What each connection remembers: stored with its socket, so it survives a hibernation. */
export interface Member {
  name: string
}

/** The chat's channels: the same on every runtime, and the page's types. */
export const chat = new Channels<Member>({
  open(conn, c) {
    const name = (c.req.query('name') ?? '').trim()
    // Refused after the upgrade rather than with a 400: a browser never shows a failed
    // upgrade's status to the page, but it does show a close code and reason.
    if (name === '') void conn.close(1008, 'A name is required: connect to /ws?name=<your name>')
    else if ([...name].length > MAX_NAME_LENGTH) void conn.close(1008, TOO_LONG)
    else conn.data = { name }
  },
})
  .topic('rooms/:room', {
    message: z.object({
      text: z.string().trim().min(1).max(MAX_TEXT_LENGTH),
      name: z.string().optional(),
    }),
    // Only its members speak in a room (so every sender is in its member list), and a room
    // comes to be, with its history, by someone entering it, never by a publish alone.
    authorize: ({ conn, topic, params, action }) =>
      checkRoom(params.room) && (action === 'subscribe' || conn.topics.has(topic)),
    publish: ({ conn, data }) => ({ name: conn.data.name, text: data.text }),
    presence: ({ conn }) => ({ name: conn.data.name }),
  })
  .request('rooms', z.object({}), ({ conn }) => listRooms(conn.hub.topics))

/** The rooms with at least one member on this server (`topics` of a server or object). */
export function listRooms(topics: Topics): { room: string; members: number }[] {
  return topics
    .names()
    .filter((topic) => topic.startsWith('rooms/'))
    .map((topic) => ({ room: topic.slice('rooms/'.length), members: topics.subscribers(topic) }))
    .sort((a, b) => a.room.localeCompare(b.room))
}

/**
 * Keeps each room's last {@link HISTORY_SIZE} messages, for {@link HISTORY_TTL} ms, framed for
 * the client (`channelFrame`): call it once per hub, at startup (`server.topics`, or a Durable
 * Object's `this.topics` in its constructor).
 */
export function useRoomHistory(topics: Topics): void {
  topics.useHistory({
    history: (topic) =>
      topic.startsWith('rooms/') ? { size: HISTORY_SIZE, ttl: HISTORY_TTL } : undefined,
    frame: channelFrame,
  })
}

function checkRoom(room: string): true {
  if (room.length <= MAX_ROOM_LENGTH && /^[\w-]+$/.test(room)) return true
  throw new ChannelError(
    'invalid',
    `The room name must be 1 to ${MAX_ROOM_LENGTH} letters, digits, - or _`,
  )
}

/** The app: the page at `/`, its script at `/chat.js`, the channels at `/ws`. */
export const app = new Hono()
app.get('/', (c) => c.html(PAGE))
app.get('/chat.js', (c) => c.body(CHAT_JS, 200, { 'content-type': 'text/javascript' }))
app.get(
  '/ws',
  upgrade(chat, {
    subprotocols: [CHANNEL_PROTOCOL],
    maxMessageSize: MAX_MESSAGE_BYTES,
    maxPublishBuffer: MAX_BUFFERED_BYTES,
  }),
)
