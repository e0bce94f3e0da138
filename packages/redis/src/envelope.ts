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
 * A message of a topic that keeps history (see `history.ts`) has kinds of its own, `p` (text) and
 * `q` (bytes), and carries the publish's number on this instance instead of a per-topic sequence,
 * then its position, written by the script that gave it:
 * `kind + id (16 hex digits) + number (hex) + ':' + epoch + ':' + offset (decimal) + ':' + payload`.
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
/** The kinds of a message with a position (a topic that keeps history). */
const POSITIONED_TEXT = 'p'
const POSITIONED_BINARY = 'q'
/** Separates the fields of a positioned message. */
const FIELD = ':'
/** The longest epoch accepted from a message (the script writes 16 hex digits). */
const MAX_EPOCH_LENGTH = 64
/** The most decimal digits of an offset: 2^53 has 16. */
const MAX_OFFSET_DIGITS = 16
const DECIMAL = /^[0-9]+$/
const EPOCH = /^[0-9a-zA-Z_-]+$/

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
  return BINARY + header + bytesToString(data)
}

/** Bytes as one character per byte (U+0000 to U+00FF), which UTF-8 carries exactly. */
export function bytesToString(data: Uint8Array): string {
  let body = ''
  for (let offset = 0; offset < data.length; offset += CHUNK) {
    body += String.fromCharCode.apply(
      null,
      data.subarray(offset, offset + CHUNK) as unknown as number[],
    )
  }
  return body
}

/** The bytes of a string of {@link bytesToString}; undefined for a character past U+00FF. */
export function stringToBytes(text: string, start = 0): Uint8Array | undefined {
  const bytes = new Uint8Array(text.length - start)
  for (let i = 0; i < bytes.length; i++) {
    const code = text.charCodeAt(start + i)
    if (code > 0xff) return undefined
    bytes[i] = code
  }
  return bytes
}

/**
 * The start of a positioned message, as this instance writes it: the script appends the epoch,
 * the offset and the payload (see the module's comment).
 */
export function positionedHead(instanceId: string, binary: boolean, number: number): string {
  return (binary ? POSITIONED_BINARY : POSITIONED_TEXT) + instanceId + number.toString(16) + FIELD
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
  /** A message with a position (a topic that keeps history) of another instance. */
  | {
      readonly kind: 'positioned'
      readonly data: MessageData
      readonly epoch: string
      readonly offset: number
    }
  /** This instance's own positioned message, back from Redis: its publish's number. */
  | {
      readonly kind: 'own'
      readonly number: number
      readonly epoch: string
      readonly offset: number
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
  if (kind === POSITIONED_TEXT || kind === POSITIONED_BINARY) {
    return decodePositioned(instanceId, message)
  }
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
  const bytes = stringToBytes(message, start)
  // A character past U+00FF was not written by encode(): the message is not ours.
  if (!bytes) return FOREIGN
  return { kind: 'message', data: bytes, publisher, sequence, starts }
}

/** The index of `char` in `text` from `from`, looking at most `most` characters; -1 if absent. */
function field(text: string, from: number, most: number): number {
  const end = Math.min(text.length, from + most + 1)
  for (let i = from; i < end; i++) if (text[i] === FIELD) return i
  return -1
}

function decodePositioned(instanceId: string, message: string): Decoded {
  const numberEnd = field(message, ID_END + 1, MAX_SEQUENCE_DIGITS)
  if (numberEnd < 0) return FOREIGN
  const epochEnd = field(message, numberEnd + 2, MAX_EPOCH_LENGTH)
  if (epochEnd < 0) return FOREIGN
  const offsetEnd = field(message, epochEnd + 2, MAX_OFFSET_DIGITS)
  if (offsetEnd < 0) return FOREIGN
  const publisher = message.slice(1, ID_END)
  const digits = message.slice(ID_END, numberEnd)
  const epoch = message.slice(numberEnd + 1, epochEnd)
  const offsetDigits = message.slice(epochEnd + 1, offsetEnd)
  if (
    !HEX.test(publisher) ||
    !HEX.test(digits) ||
    !EPOCH.test(epoch) ||
    !DECIMAL.test(offsetDigits)
  ) {
    return FOREIGN
  }
  const offset = Number(offsetDigits)
  if (publisher === instanceId) {
    return { kind: 'own', number: Number.parseInt(digits, 16), epoch, offset }
  }
  const start = offsetEnd + 1
  if (message[0] === POSITIONED_TEXT) {
    return { kind: 'positioned', data: message.slice(start), epoch, offset }
  }
  const bytes = stringToBytes(message, start)
  if (!bytes) return FOREIGN
  return { kind: 'positioned', data: bytes, epoch, offset }
}
