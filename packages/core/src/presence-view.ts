/**
 * One held topic's presence view, as `Topics` keeps it: every instance's members (this hub's
 * own and, through the backplane, the others'), keyed by member id so that none is listed twice.
 * Every change of the view, and only a change, is reported as a diff; a read of the backplane
 * replaces the view by what it read, corrected by what changed while it was on its way.
 * @internal
 * @module
 */
import { type PresenceMember, sameMember } from './presence.js'

/** What the view reports: the members that joined (or changed) and left (or changed). */
export type PresenceDiff = (
  joins: readonly PresenceMember[],
  leaves: readonly PresenceMember[],
) => void

/** A change recorded while a read is on its way, replayed over what the read returns. */
interface Change {
  readonly joins: readonly PresenceMember[]
  readonly leaves: readonly PresenceMember[]
}

const NONE: readonly PresenceMember[] = Object.freeze([])

/**
 * Applies leaves, then joins, to `members`, and returns the members whose state changed: the
 * ones gone or replaced (`leaves`, as they were) and the ones new or replaced (`joins`).
 */
function apply(
  members: Map<string, PresenceMember>,
  joins: readonly PresenceMember[],
  leaves: readonly PresenceMember[],
): Change {
  const before = new Map<string, PresenceMember | undefined>()
  for (const member of leaves) {
    if (!before.has(member.id)) before.set(member.id, members.get(member.id))
    members.delete(member.id)
  }
  for (const member of joins) {
    if (!before.has(member.id)) before.set(member.id, members.get(member.id))
    members.set(member.id, member)
  }
  return changes(before, members)
}

/** The difference, for the ids of `before`, between their state there and in `after`. */
function changes(
  before: Map<string, PresenceMember | undefined>,
  after: Map<string, PresenceMember>,
): Change {
  const joins: PresenceMember[] = []
  const leaves: PresenceMember[] = []
  for (const [id, old] of before) {
    const now = after.get(id)
    if (old && now && sameMember(old, now)) continue
    if (old) leaves.push(old)
    if (now) joins.push(now)
  }
  return { joins, leaves }
}

/** A held topic's presence: see the module. */
export class PresenceView {
  /** Every member of the topic the view knows of, this hub's included. */
  readonly members: Map<string, PresenceMember> = new Map()
  /** This hub's own members of the topic. */
  readonly local: Map<string, PresenceMember> = new Map()
  /** True once the view holds what a read returned (or it needs none). */
  loaded: boolean
  /** The read on its way, if one is: settles once it is applied (rejects when it failed). */
  loading: Promise<void> | undefined
  // The changes made since the read on its way started, and which read that is.
  #changes: Change[] | undefined
  #generation = 0
  readonly #report: PresenceDiff

  /**
   * @param report - called with every change of the view
   * @param loaded - whether the view is complete without a read (no backplane shares presence)
   */
  constructor(report: PresenceDiff, loaded: boolean) {
    this.#report = report
    this.loaded = loaded
  }

  /** This hub's member joined, or joined again with other metadata; `quiet` reports nothing. */
  joinLocal(member: PresenceMember, quiet = false): void {
    this.local.set(member.id, member)
    this.#change([member], NONE, quiet)
  }

  /** This hub's member `id` left. */
  leaveLocal(id: string): void {
    const member = this.local.get(id)
    if (!member) return
    this.local.delete(id)
    this.#change(NONE, [member], false)
  }

  /** Members of other instances joined or left (this hub's own ids are ignored). */
  remote(joins: readonly PresenceMember[], leaves: readonly PresenceMember[]): void {
    const foreign = (member: PresenceMember) => !this.local.has(member.id)
    this.#change(joins.filter(foreign), leaves.filter(foreign), false)
  }

  /**
   * Reads the members of every instance and makes them the view, with what changed meanwhile
   * replayed over them and this hub's own members as they are now; the difference is reported.
   * A later load supersedes this one. It rejects when the read fails; the view then stays as it
   * was, and not {@link PresenceView.loaded}.
   */
  load(read: () => Promise<readonly PresenceMember[]>): Promise<void> {
    const generation = ++this.#generation
    this.#changes = []
    const loading = read().then(
      (members) => {
        if (generation !== this.#generation) return
        const next = new Map<string, PresenceMember>()
        for (const member of members) next.set(member.id, member)
        for (const change of this.#changes ?? []) apply(next, change.joins, change.leaves)
        this.#settle(next)
      },
      (err: unknown) => {
        if (generation !== this.#generation) return
        this.#changes = undefined
        this.loading = undefined
        this.loaded = false
        throw err
      },
    )
    this.loading = loading
    return loading
  }

  /** The view is this hub's members only (no backplane shares presence any more). */
  localOnly(): void {
    this.#generation++
    this.#settle(new Map())
  }

  /** Makes `next` (plus this hub's own members) the view, and reports the difference. */
  #settle(next: Map<string, PresenceMember>): void {
    for (const member of this.local.values()) next.set(member.id, member)
    this.#changes = undefined
    this.loading = undefined
    this.loaded = true
    const before = new Map<string, PresenceMember | undefined>()
    for (const [id, member] of this.members) before.set(id, member)
    for (const id of next.keys()) if (!before.has(id)) before.set(id, undefined)
    this.members.clear()
    for (const [id, member] of next) this.members.set(id, member)
    const { joins, leaves } = changes(before, this.members)
    if (joins.length > 0 || leaves.length > 0) this.#report(joins, leaves)
  }

  #change(joins: readonly PresenceMember[], leaves: readonly PresenceMember[], quiet: boolean) {
    if (joins.length === 0 && leaves.length === 0) return
    this.#changes?.push({ joins, leaves })
    const change = apply(this.members, joins, leaves)
    if (!quiet && (change.joins.length > 0 || change.leaves.length > 0)) {
      this.#report(change.joins, change.leaves)
    }
  }
}
