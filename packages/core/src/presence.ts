/**
 * Presence: who is in a topic. A connection becomes a member of a topic by subscribing with
 * metadata (`conn.subscribe(topic, { presence: meta })`); it leaves when it unsubscribes or
 * closes. `topics.presence(topic)` lists the members of every instance; the `'presence'` event
 * of `Topics` carries joins and leaves as diffs.
 * @module
 */
import { utf8Length } from './close.js'

/** A JSON value: what a member's metadata may hold. */
export type PresenceMeta =
  | null
  | boolean
  | number
  | string
  | PresenceMeta[]
  | { [key: string]: PresenceMeta }

/** The most bytes a member's metadata takes as UTF-8 JSON text. */
export const MAX_PRESENCE_META_BYTES = 1024

/** One member of a topic: one connection, on any instance. */
export interface PresenceMember {
  /**
   * Unique among the members of every topic of every instance, and stable for the connection's
   * life (across a Durable Object's hibernation too). Two members never share it, so a member
   * is never listed twice.
   */
  readonly id: string
  /** The metadata it joined with (the last it joined with, when it joined again). */
  readonly meta: PresenceMeta
}

/**
 * The `'presence'` event of `Topics`: members joined or left `topic`, on this instance or
 * another. A member whose metadata changed leaves and joins again in the same event (Phoenix's
 * convention). After a backplane outage the core reads every held topic's members again and
 * fires the difference, so that a view kept from these events converges.
 */
export class PresenceEvent extends Event {
  /**
   * @param topic - the topic
   * @param joins - the members that joined (or joined again with new metadata)
   * @param leaves - the members that left (or left with their old metadata)
   */
  constructor(
    readonly topic: string,
    readonly joins: readonly PresenceMember[],
    readonly leaves: readonly PresenceMember[],
  ) {
    super('presence')
  }
}

const JSON_ONLY =
  'presence metadata is JSON: null, booleans, finite numbers, strings, arrays and plain objects'

/** Why `value` (at `path`) would not come back equal from JSON, or undefined when it would. */
function notJson(
  value: unknown,
  path: string,
  seen: Set<object>,
  depth: number,
): string | undefined {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return undefined
    case 'number':
      return Number.isFinite(value) ? undefined : `${path} is ${value}, which JSON writes as null`
    case 'undefined':
      return `${path} is undefined, which JSON drops`
    case 'object': {
      if (value === null) return undefined
      // Each level takes at least two bytes of text: deeper is over the bound anyway.
      if (depth > MAX_PRESENCE_META_BYTES) return undefined
      if (seen.has(value)) return `${path} refers to itself (a cycle)`
      seen.add(value)
      try {
        if (Array.isArray(value)) {
          for (let i = 0; i < value.length; i++) {
            if (!(i in value)) return `${path}[${i}] is a hole, which JSON writes as null`
            const wrong = notJson(value[i], `${path}[${i}]`, seen, depth + 1)
            if (wrong) return wrong
          }
          return undefined
        }
        const proto = Object.getPrototypeOf(value)
        if (proto !== Object.prototype && proto !== null) {
          const name = (proto as { constructor?: { name?: string } }).constructor?.name || 'class'
          return `${path} is a ${name}, not a plain object`
        }
        if (Object.getOwnPropertySymbols(value).length > 0) {
          return `${path} has symbol keys, which JSON drops`
        }
        for (const key of Object.keys(value)) {
          const wrong = notJson(
            (value as Record<string, unknown>)[key],
            `${path}.${key}`,
            seen,
            depth + 1,
          )
          if (wrong) return wrong
        }
        return undefined
      } finally {
        seen.delete(value)
      }
    }
    default:
      return `${path} is a ${typeof value}, which JSON cannot carry`
  }
}

/**
 * Checks a member's metadata and returns its own copy (parsed back from its JSON text, so that
 * a later change of the app's object changes no view), and that text.
 * @throws TypeError when it is not JSON; RangeError when its JSON text is over
 *   {@link MAX_PRESENCE_META_BYTES} UTF-8 bytes
 * @internal
 */
export function checkPresenceMeta(meta: unknown): { meta: PresenceMeta; text: string } {
  const wrong = notJson(meta, 'meta', new Set(), 0)
  if (wrong) {
    throw new TypeError(
      `subscribe(topic, { presence }): ${JSON_ONLY}; ${wrong}. Convert it first (a Date to its ISO string, a Map to an object, a bigint to a string)`,
    )
  }
  const text = JSON.stringify(meta)
  const bytes = utf8Length(text)
  if (bytes > MAX_PRESENCE_META_BYTES) {
    throw new RangeError(
      `subscribe(topic, { presence }): the metadata takes ${bytes} bytes as UTF-8 JSON; the limit is ${MAX_PRESENCE_META_BYTES} (MAX_PRESENCE_META_BYTES): keep ids and a few small fields in it, and the rest in your own store`,
    )
  }
  return { meta: JSON.parse(text) as PresenceMeta, text }
}

/**
 * Whether two members show the same: same id and equal metadata (equal JSON text).
 * @internal
 */
export function sameMember(a: PresenceMember, b: PresenceMember): boolean {
  return (
    a === b ||
    (a.id === b.id && (a.meta === b.meta || JSON.stringify(a.meta) === JSON.stringify(b.meta)))
  )
}
