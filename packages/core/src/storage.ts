/**
 * What a connection stores with its socket (a Durable Object's attachment), so that a
 * hibernation brings it back: its subprotocol, URL, `conn.data` and topics. Every change is
 * stored before it takes effect, so a store that throws changes nothing. `conn.data` is bounded
 * on every runtime as workerd bounds it, so that a controller behaves the same everywhere.
 * @internal
 * @module
 */
import { describeError } from './close.js'
import type { Conn } from './conn.js'
import { DATA, HOME, SOCKET, STATE, TOPICS } from './conn-fields.js'
import { presenceSnapshot, rejoin } from './membership.js'
import type { ConnSnapshot } from './port.js'
import { serializedSize } from './serialized.js'

/**
 * The most bytes `conn.data` may take in workerd's own serialization (V8's structured clone,
 * see {@link serializedSize}): its share of a Durable Object's attachment budget.
 */
export const MAX_CONN_DATA_BYTES = 2048

/** Assigns `conn.data`: checked, then stored, then set; a throw changes nothing. */
export function assignData(conn: Conn, value: unknown): void {
  let bytes: number
  try {
    bytes = serializedSize(value, 'conn.data')
  } catch (err) {
    throw new RangeError(
      `conn.data is stored with the socket, as a structured clone: ${describeError(err)}. Keep plain data in conn.data`,
    )
  }
  if (bytes > MAX_CONN_DATA_BYTES) {
    throw new RangeError(
      `conn.data is ${bytes} bytes in workerd's serialization; the limit is ${MAX_CONN_DATA_BYTES} (a Durable Object's attachment budget). Keep ids in conn.data and the rest in storage`,
    )
  }
  if (conn[SOCKET].persist) store(conn, value, conn[TOPICS], presenceSnapshot(conn))
  conn[DATA] = value
}

/** Stores what a hibernation must bring back; a throw here means nothing was stored. */
export function store(
  conn: Conn,
  data: unknown,
  topics: Iterable<string> | undefined,
  presence: ConnSnapshot['presence'],
): void {
  const socket = conn[SOCKET]
  if (!socket.persist || conn[STATE] === 'closed') return
  socket.persist(snapshot(conn, data, topics, presence))
}

function snapshot(
  conn: Conn,
  data: unknown,
  topics: Iterable<string> | undefined,
  presence: ConnSnapshot['presence'],
): ConnSnapshot {
  const base = {
    protocol: conn.protocol,
    url: conn[HOME].url,
    data,
    topics: topics ? [...topics] : [],
  }
  return presence ? { ...base, presence } : base
}

/** What to store for a connection, to rebuild it after a hibernation. */
export function snapshotOf(conn: Conn): ConnSnapshot {
  return snapshot(conn, conn[DATA], conn[TOPICS], presenceSnapshot(conn))
}

/** Rebuilds the state of a connection after a hibernation, without storing it again. */
export function restore(conn: Conn, snapshot: ConnSnapshot): void {
  conn[DATA] = snapshot.data
  rejoin(conn, snapshot.topics, snapshot.presence)
}
