/**
 * What a topic name may be: the same rule on every runtime and for every backplane.
 * @internal
 * @module
 */
import { utf8Length } from './close.js'

type IsWellFormed = (this: string) => boolean
// String.prototype.isWellFormed (ES2024) where the runtime has it; a regular expression elsewhere:
// with the `u` flag, a surrogate code point can only be a lone one.
const nativeIsWellFormed = (String.prototype as { isWellFormed?: IsWellFormed }).isWellFormed
const LONE_SURROGATE = /\p{Surrogate}/u
const isWellFormed: (text: string) => boolean = nativeIsWellFormed
  ? (text) => nativeIsWellFormed.call(text)
  : (text) => !LONE_SURROGATE.test(text)

/**
 * Why a topic name is refused, or undefined when it is a good one: a non-empty string of
 * well-formed Unicode, at most `maxBytes` UTF-8 bytes.
 *
 * A name with a lone surrogate (`'x\uD800'`, which a `.slice()` through an emoji leaves) has no
 * UTF-8 form: encoded for a backplane, two such names would become one channel, and each topic's
 * subscribers would get the other's messages. So such a name is refused everywhere.
 * @internal
 */
export function topicNameError(
  topic: unknown,
  maxBytes = Number.POSITIVE_INFINITY,
): Error | undefined {
  if (typeof topic !== 'string' || topic === '') {
    return new TypeError('A topic is a non-empty string')
  }
  if (!isWellFormed(topic)) {
    return new TypeError(
      'A topic name must be well-formed Unicode: this one has a lone surrogate (a .slice() through an emoji leaves one), which two different names would share once encoded',
    )
  }
  // A UTF-16 code unit is at most 3 UTF-8 bytes: most names need no count.
  if (topic.length * 3 > maxBytes) {
    const bytes = utf8Length(topic)
    if (bytes > maxBytes) {
      return new RangeError(
        `A topic name is at most ${maxBytes} UTF-8 bytes (maxTopicLength); this one is ${bytes}: use a shorter name, or raise maxTopicLength in the upgrade options`,
      )
    }
  }
  return undefined
}
