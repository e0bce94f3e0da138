/**
 * The envelope of a message on a Redis channel: a kind, the publishing instance's id, and the
 * payload, as one string.
 *
 * It is a string both ways, so that no runtime's `Buffer` is needed: the clients encode strings
 * as UTF-8 and decode the messages they receive from UTF-8. Text goes as is. Bytes go one
 * character per byte (U+0000 to U+00FF), which UTF-8 carries exactly: a byte under 0x80 costs one
 * byte on the wire, a higher one two.
 * @module
 */
import type { MessageData } from '@handshake/core'

/** The first character: what the payload is. Any other character is not ours. */
const TEXT = 'T'
const BINARY = 'B'

/** The length of an instance id: 16 hex digits (64 random bits). */
export const INSTANCE_ID_LENGTH = 16
const HEADER_LENGTH = 1 + INSTANCE_ID_LENGTH

/** Chunk for `String.fromCharCode.apply`, well under every engine's argument limit. */
const CHUNK = 8192

/** A new random instance id, from the Web Crypto API every runtime has. */
export function newInstanceId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(INSTANCE_ID_LENGTH / 2))
  let id = ''
  for (const byte of bytes) id += byte.toString(16).padStart(2, '0')
  return id
}

/** Wraps a message for the channel. */
export function encode(instanceId: string, data: MessageData): string {
  if (typeof data === 'string') return TEXT + instanceId + data
  let body = ''
  for (let offset = 0; offset < data.length; offset += CHUNK) {
    body += String.fromCharCode.apply(
      null,
      data.subarray(offset, offset + CHUNK) as unknown as number[],
    )
  }
  return BINARY + instanceId + body
}

/** What {@link decode} found in a message. */
export type Decoded =
  /** A message of another instance. */
  | { readonly kind: 'message'; readonly data: MessageData }
  /** This instance's own message, back from Redis. */
  | { readonly kind: 'echo' }
  /** Something another program published on the channel. */
  | { readonly kind: 'foreign' }

const ECHO: Decoded = Object.freeze({ kind: 'echo' })
const FOREIGN: Decoded = Object.freeze({ kind: 'foreign' })

/** Unwraps a message from the channel, telling apart this instance's own. */
export function decode(instanceId: string, message: string): Decoded {
  const kind = message[0]
  if ((kind !== TEXT && kind !== BINARY) || message.length < HEADER_LENGTH) return FOREIGN
  if (message.startsWith(instanceId, 1)) return ECHO
  if (kind === TEXT) return { kind: 'message', data: message.slice(HEADER_LENGTH) }
  const bytes = new Uint8Array(message.length - HEADER_LENGTH)
  for (let i = 0; i < bytes.length; i++) {
    const code = message.charCodeAt(HEADER_LENGTH + i)
    // A character past U+00FF was not written by encode(): the message is not ours.
    if (code > 0xff) return FOREIGN
    bytes[i] = code
  }
  return { kind: 'message', data: bytes }
}
