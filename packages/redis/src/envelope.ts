/**
 * The envelope of a message on a Redis channel: a kind, the publishing instance's id, the
 * message's sequence number on its topic, and the payload, as one string:
 * `kind + id (16 hex digits) + sequence (hex) + mark + payload`.
 *
 * - The kind is `t` (text) or `b` (bytes). (Version 1 used `T` and `B`, with no sequence: such
 *   messages are now foreign.)
 * - The sequence numbers one publisher's messages on one topic: each is one more than the one
 *   before, so a receiver drops a repeat (a client may send a PUBLISH twice) and sees a gap.
 * - The mark is `:` when the message follows the publisher's previous one on the topic, and `;`
 *   when it is the first of a run (the publisher had no count for the topic): the receiver then
 *   counts no gap before it.
 *
 * It is a string both ways, so that no runtime's `Buffer` is needed: the clients encode strings
 * as UTF-8 and decode the messages they receive from UTF-8. Text goes as is. Bytes go one
 * character per byte (U+0000 to U+00FF), which UTF-8 carries exactly: a byte under 0x80 costs one
 * byte on the wire, a higher one two.
 * @module
 */
import type { MessageData } from '@handshake/core'

/** The first character: what the payload is. Any other character is not ours. */
const TEXT = 't'
const BINARY = 'b'
/** After the sequence: the message follows the previous one, or starts a run. */
const FOLLOWS = ':'
const STARTS = ';'

/** The length of an instance id: 16 hex digits (64 random bits). */
export const INSTANCE_ID_LENGTH = 16
const ID_END = 1 + INSTANCE_ID_LENGTH
/** The most hex digits of a sequence number: 2^53 fits in 14. */
const MAX_SEQUENCE_DIGITS = 14
const HEX = /^[0-9a-f]+$/

/** Chunk for `String.fromCharCode.apply`, well under every engine's argument limit. */
const CHUNK = 8192

/** A new random instance id, from the Web Crypto API every runtime has. */
export function newInstanceId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(INSTANCE_ID_LENGTH / 2))
  let id = ''
  for (const byte of bytes) id += byte.toString(16).padStart(2, '0')
  return id
}

/** Where a message stands in its publisher's sequence on its topic. */
export interface Sequence {
  /** The message's number, one more than the publisher's previous one on the topic. */
  readonly sequence: number
  /** Whether the publisher had no count for the topic: no gap is counted before it. */
  readonly starts: boolean
}

/** Wraps a message for the channel. */
export function encode(instanceId: string, data: MessageData, at: Sequence): string {
  const header = instanceId + at.sequence.toString(16) + (at.starts ? STARTS : FOLLOWS)
  if (typeof data === 'string') return TEXT + header + data
  let body = ''
  for (let offset = 0; offset < data.length; offset += CHUNK) {
    body += String.fromCharCode.apply(
      null,
      data.subarray(offset, offset + CHUNK) as unknown as number[],
    )
  }
  return BINARY + header + body
}

/** What {@link decode} found in a message. */
export type Decoded =
  /** A message of another instance. */
  | {
      readonly kind: 'message'
      readonly data: MessageData
      /** The publishing instance's id. */
      readonly publisher: string
      readonly sequence: number
      readonly starts: boolean
    }
  /** This instance's own message, back from Redis. */
  | { readonly kind: 'echo' }
  /** Something another program published on the channel. */
  | { readonly kind: 'foreign' }

const ECHO: Decoded = Object.freeze({ kind: 'echo' })
const FOREIGN: Decoded = Object.freeze({ kind: 'foreign' })

/** Unwraps a message from the channel, telling apart this instance's own. */
export function decode(instanceId: string, message: string): Decoded {
  const kind = message[0]
  if (kind !== TEXT && kind !== BINARY) return FOREIGN
  let mark = -1
  const last = Math.min(message.length, ID_END + MAX_SEQUENCE_DIGITS + 1)
  for (let i = ID_END + 1; i < last; i++) {
    const char = message[i]
    if (char === FOLLOWS || char === STARTS) {
      mark = i
      break
    }
  }
  if (mark < 0) return FOREIGN
  const publisher = message.slice(1, ID_END)
  const digits = message.slice(ID_END, mark)
  if (!HEX.test(publisher) || !HEX.test(digits)) return FOREIGN
  if (publisher === instanceId) return ECHO
  const sequence = Number.parseInt(digits, 16)
  const starts = message[mark] === STARTS
  const start = mark + 1
  if (kind === TEXT) {
    return { kind: 'message', data: message.slice(start), publisher, sequence, starts }
  }
  const bytes = new Uint8Array(message.length - start)
  for (let i = 0; i < bytes.length; i++) {
    const code = message.charCodeAt(start + i)
    // A character past U+00FF was not written by encode(): the message is not ours.
    if (code > 0xff) return FOREIGN
    bytes[i] = code
  }
  return { kind: 'message', data: bytes, publisher, sequence, starts }
}
