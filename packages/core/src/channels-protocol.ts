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
      throw new FrameError(1008, 'Presence frames are reserved: not served yet (issue 22)')
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
