/**
 * Presence on Redis: which connections of every instance are members of a topic.
 *
 * Per topic, keys that share one hash tag (`{p:<topic>}`), so that a Redis Cluster would keep
 * them on one slot, as a script needs:
 * - `<prefix>{p:<topic>}`: a sorted set, the index: per instance with members, its deadline
 *   (ms, Redis's clock). An instance that misses it is taken as dead.
 * - `<prefix>{p:<topic>}:<instance>`: a hash per instance, member id → metadata (JSON text).
 *
 * One Lua script does every change, so that a change, the deadline and the diff it publishes are
 * one atomic step: it joins and removes this instance's members (or replaces them wholesale), sets
 * the instance's deadline, reaps every instance whose deadline passed (its hash read, deleted, and
 * its members' leaves published, so exactly one instance reports them), and publishes the diff on
 * the topic's channel. A read is the same script: it reaps, then returns the other live
 * instances' hashes. The topic is escaped as for its channel (see `channel.ts`).
 * @module
 */
import type { PresenceMember, PresenceMeta } from '@handshake/core'
import type { BackplanePresence, BackplaneSink } from '@handshake/core/adapter'
import { channelOf } from './channel.js'
import { INSTANCE_ID_LENGTH } from './envelope.js'
import { isNoScript, isPermanent, scriptSha } from './history.js'

/** The first character of a diff on a topic's channel (messages start with t, b, p or q). */
export const DIFF_KIND = 'm'
const DIFF_CODE = DIFF_KIND.charCodeAt(0)

/** How many intervals an instance's deadline lies ahead of its last call. */
export const DEADLINE_INTERVALS = 3
/** How many intervals the keys outlive the last call: well past the deadline, for a reaper. */
const KEEP_INTERVALS = 6
/**
 * The most members of dead instances one call reaps (their leaves published in pieces of at
 * most this many): a bigger dead hash is reaped by the calls that follow at once, each a short
 * script, rather than by one that blocks Redis (100,000 members in one script: 1.5 s).
 */
const REAP_BUDGET = 1000
/** The most changes one call carries; more wait for the next call. */
const MAX_BATCH = 1000
/** Past this many changes waiting, they are dropped for one wholesale replacement. */
const MAX_WAITING = 4 * MAX_BATCH

/**
 * The presence script.
 *
 * KEYS: 1 the index, 2 this instance's hash. ARGV: 1 this instance's id, 2 the channel,
 * 3 the deadline's distance (ms), 4 the keys' expiry (ms), 5 the mode, then its arguments:
 * - `o` (changes): 6 the number of members Redis should hold for this instance (a mismatch means
 *   the instance was reaped, or its hash expired: the script changes nothing and answers `{-1}`,
 *   and the backplane replaces its members wholesale), then triples `j`/`l`, member id, meta.
 * - `a` (assert): pairs member id, meta: this instance's members, replacing its hash.
 * - `r` (read): answers the flat hashes of the other live instances (deadline not passed);
 *   with 6 a token, it publishes the read's mark, `m` + this instance + `!` + the token, after
 *   every diff the read includes (see {@link RedisPresence.read}).
 *
 * Each call first reaps the instances past their deadline, at most {@link REAP_BUDGET} members
 * of theirs (taken with HRANDFIELD and deleted, an instance's index entry removed once its hash
 * is empty); `more` is 1 when some are left, and the backplane calls again at once.
 * `o` and `a` answer `{count, more}`, `count` the members Redis now holds for this instance
 * (`{-1, more}` on a mismatch); `r` answers `{more, hash, hash, ...}`. Each diff is
 * published as `m` + the instance whose members changed + `{"j":[members],"l":[members]}`.
 */
export const PRESENCE_SCRIPT = `local index, own, me, channel = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local mode = ARGV[5]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local function member(id, meta)
  return '{"id":' .. cjson.encode(id) .. ',"meta":' .. meta .. '}'
end
local function publish(owner, joins, leaves)
  redis.call('PUBLISH', channel, 'm' .. owner .. '{"j":[' .. table.concat(joins, ',') .. '],"l":[' .. table.concat(leaves, ',') .. ']}')
end
local budget, more = ${REAP_BUDGET}, 0
local deads = redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. now, 'LIMIT', 0, 100)
if #deads == 100 then more = 1 end
for _, dead in ipairs(deads) do
  if dead ~= me then
    if budget <= 0 then
      more = 1
      break
    end
    local key = index .. ':' .. dead
    local fields = redis.call('HRANDFIELD', key, budget, 'WITHVALUES')
    local leaves = {}
    for i = 1, #fields, 2 do
      leaves[#leaves + 1] = member(fields[i], fields[i + 1])
      redis.call('HDEL', key, fields[i])
    end
    budget = budget - #leaves
    if redis.call('HLEN', key) == 0 then redis.call('ZREM', index, dead) else more = 1 end
    if #leaves > 0 then publish(dead, {}, leaves) end
  end
end
if mode == 'r' then
  local out = {more}
  for _, live in ipairs(redis.call('ZRANGEBYSCORE', index, now, '+inf')) do
    if live ~= me then out[#out + 1] = redis.call('HGETALL', index .. ':' .. live) end
  end
  if ARGV[6] then redis.call('PUBLISH', channel, 'm' .. me .. '!' .. ARGV[6]) end
  return out
end
local present = redis.call('ZSCORE', index, me)
local touched, before = {}, {}
local function touch(id, old)
  if before[id] == nil then
    touched[#touched + 1] = id
    before[id] = old
  end
end
if mode == 'o' then
  local count = redis.call('HLEN', own)
  if tonumber(ARGV[6]) ~= count or (count > 0 and not present) then return {-1, more} end
  for i = 7, #ARGV, 3 do
    local id = ARGV[i + 1]
    touch(id, redis.call('HGET', own, id))
    if ARGV[i] == 'j' then redis.call('HSET', own, id, ARGV[i + 2]) else redis.call('HDEL', own, id) end
  end
else
  local old = redis.call('HGETALL', own)
  for i = 1, #old, 2 do touch(old[i], old[i + 1]) end
  redis.call('DEL', own)
  for i = 6, #ARGV, 2 do
    touch(ARGV[i], false)
    redis.call('HSET', own, ARGV[i], ARGV[i + 1])
  end
end
local joins, leaves = {}, {}
for _, id in ipairs(touched) do
  local old, new = before[id], redis.call('HGET', own, id)
  if old ~= new then
    if old then leaves[#leaves + 1] = member(id, old) end
    if new then joins[#joins + 1] = member(id, new) end
  end
end
local count = redis.call('HLEN', own)
if count > 0 then
  redis.call('ZADD', index, now + tonumber(ARGV[3]), me)
  redis.call('PEXPIRE', own, ARGV[4])
  if redis.call('PTTL', index) < tonumber(ARGV[4]) then redis.call('PEXPIRE', index, ARGV[4]) end
elseif present then
  redis.call('ZREM', index, me)
end
if #joins > 0 or #leaves > 0 then publish(me, joins, leaves) end
return {count, more}
`

/** The index key of a topic's presence; an instance's hash is this key + `:` + its id. */
export function presenceIndex(prefix: string, topic: string): string {
  return `${prefix}{p:${channelOf('', topic)}}`
}

/** What the presence needs of its backplane. */
export interface PresenceHost {
  readonly instanceId: string
  readonly prefix: string
  /** Sends a command on the app's client. */
  command(args: string[]): Promise<unknown>
  /** The Topics, once started. */
  sink(): BackplaneSink | undefined
  /** Reports a fault: the backplane restores, and asserts the members again before `up()`. */
  fault(error: unknown): void
  /** Whether the backplane is closed. */
  closed(): boolean
  /** Whether a local connection holds the topic (the backplane subscribes to it). */
  held(topic: string): boolean
}

/** One topic's presence on this instance. */
interface TopicState {
  readonly topic: string
  readonly index: string
  readonly own: string
  readonly channel: string
  /** Changes not sent yet, in call order: `j`/`l`, member id, meta. */
  changes: string[]
  /** Whether the next call replaces this instance's members wholesale (from `sink.members()`). */
  assert: boolean
  /** The members Redis holds for this instance after the last answered call; undefined: unknown. */
  count: number | undefined
  /** Whether the topic's presence is in use here (read, or a member joined): it is beaten. */
  used: boolean
  /**
   * When the last call was sent (`performance.now()`: a monotonic clock, so that a wall clock
   * set back does not stop the heartbeat until it catches up).
   */
  sent: number
  /**
   * Whether Redis refused the last call for good (a permission, a key of another type): reported,
   * and tried again at the next change only, not at each heartbeat nor restore.
   */
  refused: boolean
  /** The calls on their way, one after another: settles when none is left. */
  running: Promise<void> | undefined
  /** The last call left members of dead instances to reap: another follows at once. */
  reap: boolean
}

/**
 * The {@link BackplanePresence} of the Redis backplane. Each topic's calls go one after another
 * on the app's client, the changes made meanwhile batched into the next call, so that a join
 * and a leave of one member reach Redis in the order they were made (a script that Redis lost
 * and is sent again with EVAL holds back the calls behind it).
 */
export class RedisPresence implements BackplanePresence {
  readonly #host: PresenceHost
  readonly #interval: number
  readonly #topics = new Map<string, TopicState>()
  readonly #sha: Promise<string> = scriptSha(PRESENCE_SCRIPT)
  #timer: ReturnType<typeof setInterval> | undefined
  /** The reads waiting for their mark on the topic's channel: token → what ends the wait. */
  readonly #marks = new Map<string, () => void>()

  /**
   * @param host - the backplane
   * @param interval - the heartbeat (ms): see `presenceInterval`
   */
  constructor(host: PresenceHost, interval: number) {
    this.#host = host
    this.#interval = interval
    // Computed once; a rejection here would be unhandled otherwise.
    this.#sha.catch(() => {})
  }

  /** See {@link BackplanePresence.join}. */
  join(topic: string, member: PresenceMember): void {
    this.#change(topic, 'j', member.id, JSON.stringify(member.meta))
  }

  /** See {@link BackplanePresence.leave}. */
  leave(topic: string, id: string): void {
    this.#change(topic, 'l', id, '')
  }

  /**
   * See {@link BackplanePresence.read}: the other instances' members as Redis has them (the
   * dead ones reaped first), and this instance's own as the Topics has them.
   *
   * For a held topic it answers once the read's mark came back on the topic's channel (or
   * after {@link DEADLINE_INTERVALS} intervals without it): the answer travels on the app's
   * connection and the diffs on the subscriber's, so without the wait a diff that the read
   * already includes could arrive after it and take the view back (a member that left
   * listed again until its leave arrives once more). With it, every diff that arrives later
   * is newer than the read.
   */
  async read(topic: string): Promise<PresenceMember[]> {
    const state = this.#state(topic)
    // A held topic is beaten from now on, so that its dead instances are reaped; a topic read
    // without being held (`topics.presence()` of a topic nobody here holds) is not.
    const held = this.#host.held(topic)
    if (held) {
      state.used = true
      this.#beating()
    }
    let reply: unknown
    let marked: Promise<void> | undefined
    let token: string | undefined
    if (held) {
      token = crypto.randomUUID()
      const key = token
      marked = new Promise<void>((resolve) => {
        const timer = setTimeout(done, DEADLINE_INTERVALS * this.#interval)
        function done() {
          clearTimeout(timer)
          resolve()
        }
        this.#marks.set(key, () => {
          this.#marks.delete(key)
          done()
        })
      })
    }
    try {
      reply = await this.#call(state, token ? ['r', token] : ['r'])
      await marked
    } finally {
      if (token) this.#marks.get(token)?.()
      this.#forget(state)
    }
    if (!Array.isArray(reply)) throw new Error(`Unexpected answer from Redis: ${String(reply)}`)
    this.#reaped(state, reply[0])
    this.#reapMore(state)
    const members = new Map<string, PresenceMember>()
    for (let i = 1; i < reply.length; i++) {
      const fields = reply[i]
      if (!Array.isArray(fields)) continue
      for (let f = 0; f + 1 < fields.length; f += 2) {
        const id = String(fields[f])
        const meta = parseMeta(String(fields[f + 1]))
        if (meta !== undefined) members.set(id, { id, meta: meta.value })
      }
    }
    for (const member of this.#host.sink()?.members(topic) ?? []) members.set(member.id, member)
    return [...members.values()]
  }

  /**
   * A message of a held topic's channel: true when it is a diff (given to the sink unless it is
   * about this instance's members), false when it is something else.
   */
  receive(topic: string, message: string): boolean {
    if (message.charCodeAt(0) !== DIFF_CODE) return false
    const owner = message.slice(1, 1 + INSTANCE_ID_LENGTH)
    // This instance's own changes, or its own members reaped while it was away (it asserts
    // them again: see the script's `o` mode), or a read's mark.
    if (owner === this.#host.instanceId) {
      if (message.charAt(1 + INSTANCE_ID_LENGTH) === '!') {
        this.#marks.get(message.slice(2 + INSTANCE_ID_LENGTH))?.()
      }
      return true
    }
    const diff = parseDiff(message.slice(1 + INSTANCE_ID_LENGTH))
    if (!diff) return true
    try {
      this.#host.sink()?.presence(topic, diff.joins, diff.leaves)
    } catch (err) {
      // Never throw into the client's parser.
      this.#host.fault(err)
    }
    return true
  }

  /** The topic is not held here any more: it is no longer beaten unless it has members here. */
  release(topic: string): void {
    const state = this.#topics.get(topic)
    if (!state) return
    state.used = false
    this.#forget(state)
  }

  /**
   * After an outage, before `up()`: every topic where this instance has members, or had, gets
   * them asserted again (its hash replaced wholesale, the diff published). Rejects when one
   * failed: the restore tries again.
   */
  async reassert(): Promise<void> {
    const sink = this.#host.sink()
    const topics = new Set(this.#topics.keys())
    for (const topic of sink?.topics() ?? []) {
      if (sink?.members(topic).length) topics.add(topic)
    }
    await Promise.all(
      [...topics].map(async (topic) => {
        const state = this.#state(topic)
        // Refused for good: reported already; tried again at the topic's next change.
        if (state.refused) return
        if (state.count === 0 && state.changes.length === 0 && !sink?.members(topic).length) {
          return
        }
        state.assert = true
        state.changes = []
        // A call on its way (a beat, say) first: the replacement follows it.
        while (state.running) await state.running
        await this.#run(state)
        if (state.refused) return
        if (state.assert || state.count === undefined) {
          throw new Error(`Redis did not take this instance's members of "${topic}" again`)
        }
      }),
    )
  }

  /**
   * Stops the heartbeat, and removes this instance's members from Redis (their leaves
   * published) for the topics where it has some, waiting at most `waitMs`.
   */
  async close(waitMs: number): Promise<void> {
    clearInterval(this.#timer)
    this.#timer = undefined
    for (const end of [...this.#marks.values()]) end()
    const leaving: Promise<unknown>[] = []
    for (const state of this.#topics.values()) {
      // A call on its way goes first (one connection, in order): its joins are taken out too.
      if (state.count === 0 && !state.running && state.changes.length === 0) continue
      leaving.push(
        this.#eval(state, ['a']).catch(() => {
          // Redis is away: the others reap this instance's members after its deadline.
        }),
      )
    }
    this.#topics.clear()
    if (leaving.length === 0) return
    let timer: ReturnType<typeof setTimeout> | undefined
    await Promise.race([
      Promise.all(leaving),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, waitMs)
      }),
    ])
    clearTimeout(timer)
  }

  #state(topic: string): TopicState {
    let state = this.#topics.get(topic)
    if (!state) {
      const index = presenceIndex(this.#host.prefix, topic)
      state = {
        topic,
        index,
        own: `${index}:${this.#host.instanceId}`,
        channel: channelOf(this.#host.prefix, topic),
        changes: [],
        assert: false,
        // A new instance id: Redis holds nothing of it.
        count: 0,
        used: false,
        sent: Number.NEGATIVE_INFINITY,
        refused: false,
        running: undefined,
        reap: false,
      }
      this.#topics.set(topic, state)
    }
    return state
  }

  #change(topic: string, kind: 'j' | 'l', id: string, meta: string): void {
    if (this.#host.closed()) return
    const state = this.#state(topic)
    state.refused = false
    if (!state.assert) {
      state.changes.push(kind, id, meta)
      // Too many waiting (Redis is slow or away): one replacement instead, of bounded size.
      if (state.changes.length > 3 * MAX_WAITING) {
        state.assert = true
        state.changes = []
      }
    }
    this.#beating()
    this.#kick(state)
  }

  /** Starts the topic's calls unless they run; the changes made meanwhile go in the next. */
  #kick(state: TopicState): void {
    if (state.running) return
    void this.#run(state)
  }

  #run(state: TopicState): Promise<void> {
    state.running ??= this.#drain(state).finally(() => {
      state.running = undefined
      this.#forget(state)
      this.#reapMore(state)
    })
    return state.running
  }

  /** Sends the topic's calls one after another until nothing waits, or one fails. */
  async #drain(state: TopicState): Promise<void> {
    // Let the changes made in the same turn go in one call.
    await undefined
    while (!this.#host.closed() && (state.assert || state.changes.length > 0)) {
      const sink = this.#host.sink()
      let args: string[]
      if (state.assert || state.count === undefined) {
        state.assert = true
        state.changes = []
        args = ['a']
        for (const member of sink?.members(state.topic) ?? []) {
          args.push(member.id, JSON.stringify(member.meta))
        }
      } else {
        const batch = state.changes.splice(0, 3 * MAX_BATCH)
        args = ['o', String(state.count), ...batch]
      }
      const asserting = args[0] === 'a'
      if (asserting) state.assert = false
      let reply: unknown
      try {
        reply = await this.#call(state, args)
      } catch (err) {
        // Redis may or may not have run it: the members are replaced wholesale once it is back.
        this.#reassert(state, err)
        return
      }
      const count = Array.isArray(reply) ? Number(reply[0]) : Number.NaN
      if (Array.isArray(reply)) this.#reaped(state, reply[1])
      // No count: this instance was reaped (it was away past its deadline), or its hash
      // expired; its members join again, whole.
      if (count >= 0) state.count = count
      else this.#reassert(state)
    }
  }

  /** Runs the script for a topic (loaded again when Redis lost it); rejects on a fault. */
  async #call(state: TopicState, args: string[]): Promise<unknown> {
    state.sent = performance.now()
    return this.#eval(state, args)
  }

  async #eval(state: TopicState, args: string[]): Promise<unknown> {
    const tail = [
      '2',
      state.index,
      state.own,
      this.#host.instanceId,
      state.channel,
      String(DEADLINE_INTERVALS * this.#interval),
      String(KEEP_INTERVALS * this.#interval),
      ...args,
    ]
    try {
      try {
        return await this.#host.command(['EVALSHA', await this.#sha, ...tail])
      } catch (err) {
        if (!isNoScript(err)) throw err
        // Redis restarted, or its scripts were flushed: EVAL loads it again. The topic's next
        // call waits for this one, so order holds.
        return await this.#host.command(['EVAL', PRESENCE_SCRIPT, ...tail])
      }
    } catch (err) {
      throw refusal(err) ?? err
    }
  }

  /** A topic with no member here and not held is forgotten once its calls are done. */
  #forget(state: TopicState): void {
    if (state.used || state.running || state.count !== 0 || state.changes.length > 0) return
    if (state.assert) return
    if (this.#topics.get(state.topic) === state) this.#topics.delete(state.topic)
    if (this.#topics.size === 0) {
      clearInterval(this.#timer)
      this.#timer = undefined
    }
  }

  /** Starts the heartbeat while some topic's presence is in use. */
  #beating(): void {
    if (this.#timer !== undefined || this.#host.closed()) return
    this.#timer = setInterval(() => this.#beat(), this.#interval)
  }

  /**
   * Every interval, each topic in use here not called for half an interval gets a call: it
   * moves this instance's deadline on (when it has members) and reaps the dead instances.
   */
  #beat(): void {
    const stale = performance.now() - this.#interval / 2
    for (const state of this.#topics.values()) {
      if (state.sent > stale) continue
      if (state.count === 0 && !state.used) continue
      this.#beatTopic(state)
    }
  }

  /** One heartbeat call for a topic, unless a call is on its way or Redis refused for good. */
  #beatTopic(state: TopicState): void {
    if (state.running || state.refused || this.#host.closed()) return
    state.running = this.#beatOnce(state).finally(() => {
      state.running = undefined
      this.#forget(state)
      // Changes made while the beat was on its way.
      if (state.assert || state.changes.length > 0) this.#kick(state)
      else this.#reapMore(state)
    })
  }

  /** Notes whether a call left members of dead instances to reap (its `more`). */
  #reaped(state: TopicState, more: unknown): void {
    if (Number(more) === 1) state.reap = true
  }

  /**
   * A call left members of dead instances to reap: another call follows, a turn later (the
   * calls on their way first), so that a big dead hash goes in short scripts, one after another.
   */
  #reapMore(state: TopicState): void {
    if (!state.reap || this.#host.closed()) return
    state.reap = false
    setTimeout(() => {
      // A topic forgotten meanwhile is reaped by its next call.
      if (this.#topics.get(state.topic) === state) this.#beatTopic(state)
    }, 0)
  }

  async #beatOnce(state: TopicState): Promise<void> {
    if (state.count === undefined) {
      state.assert = true
      return this.#drain(state)
    }
    try {
      const reply = await this.#call(state, ['o', String(state.count)])
      const count = Array.isArray(reply) ? Number(reply[0]) : Number.NaN
      if (Array.isArray(reply)) this.#reaped(state, reply[1])
      if (count < 0 || Number.isNaN(count)) {
        this.#reassert(state)
        await this.#drain(state)
      }
    } catch (err) {
      this.#reassert(state, err)
    }
  }

  /**
   * Forgets what Redis holds of this instance's members of the topic (a call failed, or the
   * instance was reaped, or its hash expired): the next call asserts them again, whole, and
   * drops the changes waiting. With `err`, the call failed: the fault is reported, and one that
   * Redis refused for good stops the topic's heartbeat calls.
   */
  #reassert(state: TopicState, err?: unknown): void {
    state.count = undefined
    state.assert = true
    state.changes = []
    if (err === undefined) return
    state.refused = permanent(err)
    this.#host.fault(err)
  }
}

/** The commands the presence script runs, besides EVALSHA and EVAL themselves. */
export const PRESENCE_COMMANDS =
  'TIME ZRANGEBYSCORE ZSCORE ZADD ZREM HRANDFIELD HGETALL HGET HSET HDEL HLEN DEL PEXPIRE PTTL PUBLISH'

/** Whether Redis refused for good (see `isPermanent`), the refusal told by {@link refusal} too. */
function permanent(error: unknown): boolean {
  return isPermanent(error) || (error instanceof Error && isPermanent(error.cause))
}

/** Redis's refusal of a command to the backplane's user, as an error that says what to grant. */
function refusal(error: unknown): Error | undefined {
  if (!(error instanceof Error)) return undefined
  if (!/^NOPERM|can't run this command|no permissions/i.test(error.message)) return undefined
  return new Error(
    `Redis refused presence's script (${error.message}): grant the backplane's user EVALSHA, EVAL and the commands the script runs (${PRESENCE_COMMANDS}) on the prefix's keys and channels`,
    { cause: error },
  )
}

/** Parses a member's metadata as Redis keeps it; undefined when it is not JSON. */
function parseMeta(text: string): { value: PresenceMeta } | undefined {
  try {
    return { value: JSON.parse(text) as PresenceMeta }
  } catch {
    return undefined
  }
}

/** A diff's members, checked: an id that is a string, and a meta. */
function members(list: unknown): PresenceMember[] | undefined {
  if (!Array.isArray(list)) return undefined
  const out: PresenceMember[] = []
  for (const item of list) {
    if (!item || typeof item !== 'object') return undefined
    const { id, meta } = item as { id?: unknown; meta?: unknown }
    if (typeof id !== 'string' || meta === undefined) return undefined
    out.push({ id, meta: meta as PresenceMeta })
  }
  return out
}

/** Parses a diff's JSON (after the kind and the instance); undefined when it is not one. */
export function parseDiff(
  text: string,
): { joins: PresenceMember[]; leaves: PresenceMember[] } | undefined {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return undefined
  }
  if (!parsed || typeof parsed !== 'object') return undefined
  const joins = members((parsed as { j?: unknown }).j)
  const leaves = members((parsed as { l?: unknown }).l)
  if (!joins || !leaves) return undefined
  return { joins, leaves }
}
