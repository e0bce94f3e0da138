/**
 * Channel names: a topic's Redis channel is `prefix + topic`, encoded so that two topics never
 * share a channel.
 *
 * The clients send a channel name as UTF-8, which has no form for a lone surrogate: `"x\uD800"`
 * and `"x\uDBFF"` would both become `"x\uFFFD"`. A topic that is not well-formed UTF-16 (or that
 * starts with U+FFFF, the escape) is therefore sent as U+FFFF and its UTF-16 code units in hex;
 * every other topic as it is. The mapping is one-to-one both ways.
 * @module
 */

/** Starts an escaped topic: a noncharacter, which UTF-8 carries like any other. */
const ESCAPE = '\uffff'
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/
const HEX_UNITS = /^(?:[0-9a-f]{4})*$/

/** The Redis channel of `topic`. */
export function channelOf(prefix: string, topic: string): string {
  if (!topic.startsWith(ESCAPE) && !LONE_SURROGATE.test(topic)) return prefix + topic
  let hex = ''
  for (let i = 0; i < topic.length; i++) hex += topic.charCodeAt(i).toString(16).padStart(4, '0')
  return prefix + ESCAPE + hex
}

/** The topic of a Redis channel, or undefined when the channel is not one of ours. */
export function topicOf(prefix: string, channel: string): string | undefined {
  if (!channel.startsWith(prefix)) return undefined
  const rest = channel.slice(prefix.length)
  if (!rest.startsWith(ESCAPE)) return rest
  const hex = rest.slice(ESCAPE.length)
  if (!HEX_UNITS.test(hex)) return undefined
  let topic = ''
  for (let i = 0; i < hex.length; i += 4) {
    topic += String.fromCharCode(Number.parseInt(hex.slice(i, i + 4), 16))
  }
  return topic
}
