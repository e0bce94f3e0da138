/**
 * The channel protocol's frames, `handshake.v1`: JSON text, one object per WebSocket message,
 * told apart by `type`. The table is in `@handshake/client`'s README; this file parses what a
 * client sends and writes what the server answers.
 * @module
 */
import type { StandardSchemaV1 } from '@standard-schema/spec'
import type { Position } from './history.js'

/** The subprotocol a channel client offers and a channel server must choose. */
export const CHANNEL_PROTOCOL = 'handshake.v1'

/** The frame a client sends as its heartbeat, byte for byte; the server answers {@link PONG}. */
export const PING = '{"type":"ping"}'
/** The answer to {@link PING}, byte for byte. */
export const PONG = '{"type":"pong"}'

/** A JSON value, as frames carry it. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

/** One of a schema's issues, as an error frame carries it: the path flattened to keys. */
export interface IssueFrame {
  readonly message: string
  readonly path?: ReadonlyArray<string | number>
}

/** A frame a client sends, once parsed and checked. */
export type ClientFrame =
  | {
      readonly type: 'subscribe'
      readonly id: number
      readonly topic: string
      readonly since?: Position
    }
  | { readonly type: 'unsubscribe'; readonly id: number; readonly topic: string }
  | {
      readonly type: 'publish'
      readonly id: number | undefined
      readonly topic: string
      readonly data: unknown
    }
  | {
      readonly type: 'request'
      readonly id: number
      readonly name: string
      readonly input: unknown
    }
  | { readonly type: 'ping' }
  | { readonly type: 'pong' }

/** Why a frame is not the protocol: its text is not JSON (1007), or not a frame (1008). */
export class FrameError extends Error {
  override readonly name = 'FrameError'
  constructor(
    /** 1007 when the text is not JSON, 1008 when the JSON is not a frame of the protocol. */
    readonly code: 1007 | 1008,
    message: string,
  ) {
    super(message)
  }
}

const isId = (value: unknown): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value) && value > 0

const isName = (value: unknown): value is string => typeof value === 'string' && value !== ''

function isPosition(value: unknown): value is Position {
  if (typeof value !== 'object' || value === null) return false
  const { epoch, offset } = value as Record<string, unknown>
  return typeof epoch === 'string' && typeof offset === 'number' && Number.isSafeInteger(offset)
}

/**
 * Parses one text message. Throws a {@link FrameError} when it is not JSON or not a frame; the
 * message says which field is wrong.
 */
export function parseFrame(text: string): ClientFrame {
  if (text === PING) return { type: 'ping' }
  return quickFrame(text) ?? parseObject(text)
}

// The fast path: a request or a publish written the way `@handshake/client` writes it, with
// its keys in this order and no whitespace, is read field by field, and only its `input` or
// `data` goes through JSON.parse. Anything else (other keys, escapes in a name, whitespace, a
// payload that is not one JSON value) gives undefined, and the whole text is parsed as JSON:
// the two paths agree on every text the fast one accepts, since such a text is exactly the
// JSON object with those keys.
const REQUEST_HEAD = '{"type":"request","id":'
const PUBLISH_HEAD = '{"type":"publish",'

/** A request or publish frame in the client's own layout, or undefined. */
function quickFrame(text: string): ClientFrame | undefined {
  if (text.charCodeAt(text.length - 1) !== 0x7d) return undefined // not ending in `}`
  if (text.startsWith(REQUEST_HEAD)) {
    const id = quickId(text, REQUEST_HEAD.length)
    if (id === undefined) return undefined
    const name = quickString(text, quickEnd, ',"name":"')
    if (name === undefined || name === '') return undefined
    const input = quickValue(text, quickEnd, '","input":')
    if (input === NOT_JSON) return undefined
    return { type: 'request', id, name, input }
  }
  if (text.startsWith(PUBLISH_HEAD)) {
    let id: number | undefined
    quickEnd = PUBLISH_HEAD.length
    if (text.startsWith('"id":', quickEnd)) {
      id = quickId(text, quickEnd + 5)
      if (id === undefined || text.charCodeAt(quickEnd) !== 0x2c) return undefined // `,`
      quickEnd++
    }
    const topic = quickString(text, quickEnd, '"topic":"')
    if (topic === undefined || topic === '') return undefined
    const data = quickValue(text, quickEnd, '","data":')
    if (data === NOT_JSON) return undefined
    return { type: 'publish', id, topic, data }
  }
  return undefined
}

/** Where the last quick read ended (one reader at a time: parsing is synchronous). */
let quickEnd = 0
const NOT_JSON: unique symbol = Symbol('not JSON')

/** A positive safe integer without leading zeros at `at`; `quickEnd` goes past it. */
function quickId(text: string, at: number): number | undefined {
  let i = at
  let code = text.charCodeAt(i)
  if (code < 0x31 || code > 0x39) return undefined // 1 to 9
  let id = 0
  while (code >= 0x30 && code <= 0x39) {
    id = id * 10 + (code - 0x30)
    code = text.charCodeAt(++i)
  }
  if (!Number.isSafeInteger(id)) return undefined
  quickEnd = i
  return id
}

/**
 * `key` (ending in the string's opening quote) at `at`, then a string with no escape and no
 * control character; `quickEnd` is at its closing quote.
 */
function quickString(text: string, at: number, key: string): string | undefined {
  if (!text.startsWith(key, at)) return undefined
  const start = at + key.length
  let i = start
  for (;;) {
    const code = text.charCodeAt(i)
    if (code === 0x22) break // the closing `"`
    if (code < 0x20 || code === 0x5c || Number.isNaN(code)) return undefined // control, `\`, end
    i++
  }
  quickEnd = i
  return text.slice(start, i)
}

/** `key` at `at`, then one JSON value up to the final `}`. */
function quickValue(text: string, at: number, key: string): unknown {
  if (!text.startsWith(key, at)) return NOT_JSON
  try {
    return JSON.parse(text.slice(at + key.length, -1))
  } catch {
    return NOT_JSON
  }
}

/** Any frame: the whole text parsed as JSON, then checked field by field. */
function parseObject(text: string): ClientFrame {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw new FrameError(1007, `Not JSON: every ${CHANNEL_PROTOCOL} frame is a JSON object`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new FrameError(1008, `Not a ${CHANNEL_PROTOCOL} frame: expected a JSON object`)
  }
  const frame = value as Record<string, unknown>
  const bad = (field: string, expected: string) =>
    new FrameError(1008, `Bad ${String(frame.type)} frame: "${field}" must be ${expected}`)
  switch (frame.type) {
    case 'subscribe':
      if (!isId(frame.id)) throw bad('id', 'a positive integer')
      if (!isName(frame.topic)) throw bad('topic', 'a non-empty string')
      if (frame.since !== undefined && !isPosition(frame.since)) {
        throw bad('since', '{"epoch": string, "offset": integer}')
      }
      return frame.since === undefined
        ? { type: 'subscribe', id: frame.id, topic: frame.topic }
        : { type: 'subscribe', id: frame.id, topic: frame.topic, since: frame.since as Position }
    case 'unsubscribe':
      if (!isId(frame.id)) throw bad('id', 'a positive integer')
      if (!isName(frame.topic)) throw bad('topic', 'a non-empty string')
      return { type: 'unsubscribe', id: frame.id, topic: frame.topic }
    case 'publish':
      if (frame.id !== undefined && !isId(frame.id)) throw bad('id', 'a positive integer')
      if (!isName(frame.topic)) throw bad('topic', 'a non-empty string')
      if (!('data' in frame)) throw bad('data', 'present')
      return { type: 'publish', id: frame.id, topic: frame.topic, data: frame.data }
    case 'request':
      if (!isId(frame.id)) throw bad('id', 'a positive integer')
      if (!isName(frame.name)) throw bad('name', 'a non-empty string')
      return { type: 'request', id: frame.id, name: frame.name, input: frame.input }
    case 'ping':
      return { type: 'ping' }
    case 'pong':
      return { type: 'pong' }
    case 'presence':
      throw new FrameError(
        1008,
        'Presence frames go from the server to the client only: a topic with a presence hook sends them',
      )
    default:
      throw new FrameError(
        1008,
        `Not a ${CHANNEL_PROTOCOL} frame: unknown type ${JSON.stringify(frame.type)}`.slice(0, 120),
      )
  }
}

/** The issues of a failed validation, with paths flattened to keys JSON can carry. */
export function issueFrames(issues: ReadonlyArray<StandardSchemaV1.Issue>): IssueFrame[] {
  return issues.map((issue) => {
    if (!issue.path || issue.path.length === 0) return { message: issue.message }
    const path = issue.path.map((segment) => {
      const key = typeof segment === 'object' ? segment.key : segment
      return typeof key === 'number' ? key : String(key)
    })
    return { message: issue.message, path }
  })
}

/** A `message` frame without its position: `{"type":"message","topic":...,"data":...}`. */
export function messageFrame(topic: string, data: unknown): string {
  return `{"type":"message","topic":${JSON.stringify(topic)},"data":${JSON.stringify(data) ?? 'null'}}`
}

/** What every `message` frame starts with, so that a position can be added to a framed one. */
export const MESSAGE_PREFIX = '{"type":"message",'

/** A `message` frame with its position added (the frame ends with `}`). */
export function withPosition(frame: string, position: Position): string {
  return `${frame.slice(0, -1)},"position":${JSON.stringify(position)}}`
}

/** The JSON of a server frame. */
export function frame(value: Record<string, unknown>): string {
  return JSON.stringify(value)
}
