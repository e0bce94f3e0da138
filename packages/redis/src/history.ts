/**
 * A topic's history on Redis: its keys, the two Lua scripts that write and read it, and the
 * reading of their answers.
 *
 * Per topic, two keys that share one hash tag (`{h:<topic>}`), so that a Redis Cluster would
 * keep them on one slot, as a script needs:
 * - `<prefix>{h:<topic>}`: a stream of the topic's last `size` messages. Each entry's id is
 *   `<offset>-<tag>`, the tag naming the instance that published it and its number there (see
 *   {@link entryTag}), and its one field is `t` (text) or `b` (bytes, one character per byte)
 *   with the data.
 * - `<prefix>{h:<topic>}:m`: a hash with the epoch (`e`), the latest offset (`o`), and per
 *   instance that published, the number of its last message on the topic (to drop a message sent
 *   twice, and to keep one instance's messages in order).
 *
 * The topic is escaped as for its channel (see `channel.ts`).
 * @module
 */
import type { HistoryRead } from '@handshake/core/adapter'
import { channelOf } from './channel.js'
import { stringToBytes } from './envelope.js'

/** The stream's key and the hash's key of a topic's history. */
export function historyKeys(prefix: string, topic: string): [meta: string, stream: string] {
  const stream = `${prefix}{h:${channelOf('', topic)}}`
  return [`${stream}:m`, stream]
}

/** The most instances whose last number a topic remembers; past it, another one is forgotten. */
export const MAX_HISTORY_PUBLISHERS = 1024

/**
 * How long (ms) an epoch that a read made, for a topic with no history yet, is kept when
 * nothing is published: the first publish then sets the topic's own `ttl`.
 */
export const EMPTY_HISTORY_TTL = 24 * 60 * 60 * 1000

/**
 * Appends one message and publishes it, atomically.
 *
 * KEYS: the hash, the stream. ARGV: 1 an epoch for a new history, 2 size, 3 ttl (ms),
 * 4 channel, 5 this instance's id, 6 the message's number on the topic, 7 `'1'` when the
 * instance's previous messages on the topic are all settled (its count starts here), 8 the
 * stream field (`t` or `b`), 9 the envelope's head, 10 the payload, 11 the most publishers kept,
 * 12 the Redis server's run id, 13 `'1'` when Redis writes every change to its append-only file
 * before it answers (`appendonly yes`, `appendfsync always`), 14 the entry id's second part
 * (see {@link entryTag}).
 *
 * A history written while Redis did not (the hash field `r` holds that server's run id) is
 * taken as lost once the server restarted (another run id): what it reloaded (an RDB snapshot,
 * an append-only file synced every second) may be older than what subscribers were given, and
 * its offsets would be given again to other messages. It starts a new epoch instead.
 *
 * Answers `{epoch, offset}`; `0` for a message it has already appended (a number at or under
 * the instance's last: sent again after its answer was lost); `-1` for a message that follows
 * one that has not been appended (a number past the last + 1: sent again, in order, by the
 * backplane). A topic's history that is gone (expired, or Redis restarted empty) gets the new
 * epoch, and its offsets start over at 1.
 */
export const PUBLISH_SCRIPT = `local meta, stream = KEYS[1], KEYS[2]
local publisher, number = ARGV[5], tonumber(ARGV[6])
local state = redis.call('HMGET', meta, 'e', 'r', publisher)
local epoch, run, last = state[1], state[2], state[3]
if epoch and run and run ~= ARGV[12] then
  redis.call('DEL', meta)
  epoch, run, last = false, false, false
end
if last then
  last = tonumber(last)
  if number <= last then return 0 end
  if ARGV[7] ~= '1' and number ~= last + 1 then return -1 end
elseif ARGV[7] ~= '1' then
  return -1
end
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'e', epoch)
end
if ARGV[13] == '1' then
  if run then redis.call('HDEL', meta, 'r') end
elseif run ~= ARGV[12] then
  redis.call('HSET', meta, 'r', ARGV[12])
end
local offset = string.format('%d', redis.call('HINCRBY', meta, 'o', 1))
redis.call('HSET', meta, publisher, ARGV[6])
if not last and redis.call('HLEN', meta) > tonumber(ARGV[11]) + 3 then
  for _, other in ipairs(redis.call('HRANDFIELD', meta, 5)) do
    if other ~= 'e' and other ~= 'o' and other ~= 'r' and other ~= publisher then
      redis.call('HDEL', meta, other)
      break
    end
  end
end
redis.call('XADD', stream, 'MAXLEN', ARGV[2], offset .. '-' .. ARGV[14], ARGV[8], ARGV[10])
redis.call('PEXPIRE', meta, ARGV[3])
redis.call('PEXPIRE', stream, ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[9] .. epoch .. ':' .. offset .. ':' .. ARGV[10])
return {epoch, offset}
`

/**
 * Reads a topic's history after a position, atomically.
 *
 * KEYS: the hash, the stream. ARGV: 1 the epoch of the position (`''`: none, only the latest
 * position), 2 its offset, 3 the most messages, 4 an epoch for a topic with no history,
 * 5 how long (ms) such an epoch is kept.
 *
 * Answers `{epoch, offset, complete (1 or 0), entries}`. A topic with no history gets one, empty
 * (offset 0), so that its first message, whoever publishes it, is offset 1 of that epoch. That
 * epoch is marked with the server's run id (`r`, as a publish marks it on a server that does not
 * sync every write; the first publish on a server that does clears it): a snapshot taken before
 * the first publish and reloaded after later ones would otherwise give offsets 1, 2, ... of that
 * epoch again. On a server that syncs every write and restarted before the first publish, that
 * publish starts a new epoch (subscribers are told of a gap in which nothing was lost). A
 * position past the latest offset of its epoch (Redis went back to older data) is not complete.
 */
export const READ_SCRIPT = `local meta, stream = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', meta, 'e')
if not epoch then
  epoch = ARGV[4]
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'e', epoch, 'o', 0)
  local info = redis.pcall('INFO', 'server')
  local run = type(info) == 'string' and string.match(info, 'run_id:(%w+)')
  if run then redis.call('HSET', meta, 'r', run) end
  redis.call('PEXPIRE', meta, ARGV[5])
end
local offset = tonumber(redis.call('HGET', meta, 'o') or 0)
if ARGV[1] == '' then return {epoch, offset, 1, {}} end
local since = tonumber(ARGV[2])
if ARGV[1] == epoch and since == offset then return {epoch, offset, 1, {}} end
if ARGV[1] == epoch and since > offset then return {epoch, offset, 0, {}} end
local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
local oldest = offset + 1
if first then oldest = tonumber(string.match(first[1], '^%d+')) end
if ARGV[1] == epoch and since + 1 >= oldest then
  return {epoch, offset, 1, redis.call('XRANGE', stream, string.format('%d', since + 1) .. '-0', '+', 'COUNT', ARGV[3])}
end
return {epoch, offset, 0, redis.call('XRANGE', stream, '-', '+', 'COUNT', ARGV[3])}
`

/** The digits of a publish's number in an entry's tag. */
const NUMBER_DIGITS = 10
const NUMBER_MODULO = 10 ** NUMBER_DIGITS

/** A new instance tag: 8 decimal digits, random. */
export function newInstanceTag(): string {
  const [random] = crypto.getRandomValues(new Uint32Array(1))
  return String(10_000_000 + ((random as number) % 90_000_000))
}

/**
 * The second part of a stream entry's id: the instance's tag, then its publish's number (10
 * digits, modulo 10^10), so at most 18 digits, under 2^64. A read of the history tells this
 * instance's own messages by it, even those whose position it never learnt (Redis appended
 * one and then died before it answered).
 */
export function entryTag(instanceTag: string, number: number): string {
  return instanceTag + String(number % NUMBER_MODULO).padStart(NUMBER_DIGITS, '0')
}

/** The publish's number of this instance in an entry's tag; undefined for another instance's. */
export function ownNumber(instanceTag: string, tag: string): number | undefined {
  if (tag.length !== instanceTag.length + NUMBER_DIGITS || !tag.startsWith(instanceTag)) {
    return undefined
  }
  return Number(tag.slice(instanceTag.length))
}

/** The SHA-1 of a script, in hex, as EVALSHA names it (Web Crypto, on every runtime). */
export async function scriptSha(script: string): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-1', new TextEncoder().encode(script))
  let hex = ''
  for (const byte of new Uint8Array(digest)) hex += byte.toString(16).padStart(2, '0')
  return hex
}

/** A new random epoch: 16 hex digits (64 bits). */
export function newEpoch(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8))
  let epoch = ''
  for (const byte of bytes) epoch += byte.toString(16).padStart(2, '0')
  return epoch
}

/** What the history connection learns of the server when it opens. */
export interface ServerFacts {
  /** The server's run id (a new one at each start). */
  readonly runId: string
  /** Whether it writes every change to its append-only file before it answers. */
  readonly durable: boolean
}

/** Reads the server's run id (`INFO server`) and whether it is durable (`CONFIG GET`). */
export async function serverFacts(
  call: (args: string[]) => Promise<unknown>,
): Promise<ServerFacts> {
  let info: string
  try {
    info = String(await call(['INFO', 'server']))
  } catch (err) {
    throw new Error(
      `Redis refused INFO server (${err instanceof Error ? err.message : String(err)}): the history needs its run_id to tell a restarted Redis; grant the backplane's user INFO (+info)`,
    )
  }
  const runId = /^run_id:([0-9a-zA-Z]+)/m.exec(info)?.[1]
  if (!runId) throw new Error('Redis did not say its run_id in INFO server')
  let durable = false
  try {
    // Managed services often refuse CONFIG: then the history is taken as not durable.
    const config = await call(['CONFIG', 'GET', 'appendonly', 'appendfsync'])
    const values = new Map<string, string>()
    if (Array.isArray(config)) {
      for (let i = 0; i + 1 < config.length; i += 2)
        values.set(String(config[i]), String(config[i + 1]))
    } else if (config && typeof config === 'object') {
      for (const [key, value] of Object.entries(config)) values.set(key, String(value))
    }
    durable = values.get('appendonly') === 'yes' && values.get('appendfsync') === 'always'
  } catch {
    durable = false
  }
  return { runId, durable }
}

/** Whether an error is Redis's answer that the script is not in its cache. */
export function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT')
}

/**
 * Redis's error replies after which the same command may succeed later (Redis loading its data,
 * busy with a script, out of memory, a replica, a cluster in transition).
 */
const TRANSIENT =
  /^(LOADING|BUSY|OOM|TRYAGAIN|MASTERDOWN|READONLY|CLUSTERDOWN|MISCONF|NOREPLICAS)\b/
/** An error reply of Redis: an upper-case code, then the message. */
const ERROR_REPLY = /^[A-Z]{2,}\b/

/**
 * Whether an error is Redis's final word on that command (a wrong key type, a refused
 * permission): sending it again would fail again. A connection lost, or a transient reply, is
 * not.
 */
export function isPermanent(error: unknown): boolean {
  if (!(error instanceof Error)) return false
  return ERROR_REPLY.test(error.message) && !TRANSIENT.test(error.message) && !isNoScript(error)
}

/** A {@link HistoryRead} whose messages can still be given their origin. */
export interface ParsedRead extends HistoryRead {
  readonly messages: { offset: number; data: string | Uint8Array; origin?: object }[]
}

/**
 * Turns the read script's answer into a {@link HistoryRead}; `originOf` gives the origin of a
 * message by its entry's tag (this instance's own publishes).
 */
export function parseRead(
  reply: unknown,
  originOf: (tag: string) => object | undefined = () => undefined,
): ParsedRead {
  if (!Array.isArray(reply) || reply.length !== 4 || !Array.isArray(reply[3])) {
    throw new Error(`Unexpected answer from Redis to the history read: ${String(reply)}`)
  }
  const [epoch, offset, complete, entries] = reply as [unknown, unknown, unknown, unknown[]]
  const messages: ParsedRead['messages'] = []
  for (const entry of entries) {
    if (!Array.isArray(entry) || !Array.isArray(entry[1])) continue
    const id = String(entry[0])
    const dash = id.indexOf('-')
    const at = Number.parseInt(id, 10)
    const [field, value] = entry[1] as [unknown, unknown]
    if (typeof value !== 'string' || !(at > 0)) continue
    const data = field === 't' ? value : field === 'b' ? stringToBytes(value) : undefined
    if (data === undefined) continue
    const origin = originOf(id.slice(dash + 1))
    messages.push(origin === undefined ? { offset: at, data } : { offset: at, data, origin })
  }
  return {
    epoch: String(epoch),
    offset: Number(offset),
    messages,
    complete: Number(complete) === 1,
  }
}
