/** Turning the rounds of one server into its row: medians, CPU per unit, and shares of a core. */

/** The workloads, with the figure each is judged by. */
export const WORKLOADS = {
  small: {
    title: 'Small-message echo',
    what: '32-byte text, 64 connections, 16 messages outstanding on each',
    metric: 'msgsPerS',
    unit: 'msg/s',
    per: 'msg',
  },
  large: {
    title: 'Large-message echo',
    what: '256 KiB binary, 8 connections, 1 message outstanding on each; MB/s echoed back',
    metric: 'mbPerS',
    unit: 'MB/s',
    per: 'msg',
  },
  churn: {
    title: 'Connection churn',
    what: '16 connections at a time, each: connect, handshake, one 32-byte echo, close handshake, wait for the server to close TCP',
    metric: 'connsPerS',
    unit: 'conn/s',
    per: 'conn',
  },
}

/**
 * The latency workload, apart from WORKLOADS: its figure is a time (lower is better), so it has
 * its own table, summary column and target instead of the throughput ratios and the chart.
 */
export const LATENCY = {
  title: 'Latency',
  what: 'one connection, one 32-byte text message in flight; the round trip of a lone message',
  per: 'msg',
}

/**
 * The channel protocol's workloads (`@handshake/core/channels`), run against the `events`
 * server's `/channels` route only, each beside that server's own small-message echo in the
 * same round: what the protocol costs over a raw event-controller echo. The frames are the
 * client's own layout; the input is 32 letters, as the echo's message.
 */
const LETTERS = 'abcdefghijklmnopqrstuvwxyzabcdef'
export const CHANNEL_WORKLOADS = {
  channelRequest: {
    title: 'Channel request and response',
    what: '`request` frame for `echo` (its handler returns the input) answered by a `response` frame',
    send: `{"type":"request","id":1,"name":"echo","input":"${LETTERS}"}`,
    reply: `{"type":"response","id":1,"output":"${LETTERS}"}`,
  },
  channelPublish: {
    title: 'Channel echo (acknowledged publish)',
    what: '`publish` frame on topic `echo`, checked by its schema and published, answered by an `ack` frame',
    send: `{"type":"publish","id":1,"topic":"echo","data":"${LETTERS}"}`,
    reply: '{"type":"ack","id":1}',
  },
}

/**
 * The median of the defined numbers. Negative ones are dropped unless `signed` (loadgen reports
 * -1 for "none"; a memory difference can be negative).
 */
export function median(values, signed = false) {
  const xs = values.filter((v) => typeof v === 'number' && Number.isFinite(v) && (signed || v >= 0))
  if (xs.length === 0) return undefined
  xs.sort((a, b) => a - b)
  const mid = xs.length >> 1
  return xs.length % 2 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2
}

/** The least and the greatest of the defined numbers, as `[min, max]`, or undefined. */
export function range(values, signed = false) {
  const xs = values.filter((v) => typeof v === 'number' && Number.isFinite(v) && (signed || v >= 0))
  if (xs.length === 0) return undefined
  return [Math.min(...xs), Math.max(...xs)]
}

/**
 * The ratio `a / b` of two servers' figures, round by round (the servers ran side by side in
 * each round, so a slow moment of the machine hits both): its median and its spread (min–max
 * over the rounds), or undefined when no round has both.
 * @param {object[]} a - one server's rounds (loadgen results, or `{ error }`)
 * @param {object[]} b - the other's, in the same order
 * @param {(r: object) => number} f - the figure of one round
 */
export function pairedRatio(a, b, f) {
  const ratios = []
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i]?.error || b[i]?.error) continue
    const x = f(a[i])
    const y = f(b[i])
    if (Number.isFinite(x) && Number.isFinite(y) && x >= 0 && y > 0) ratios.push(x / y)
  }
  if (ratios.length === 0) return undefined
  return { median: median(ratios), spread: range(ratios), rounds: ratios.length }
}

function throughputRow(rounds) {
  const ok = rounds.filter((r) => !r.error)
  const failed = rounds.filter((r) => r.error)
  if (ok.length === 0) {
    return failed.length ? { rounds: 0, failed: failed.length, error: failed[0].error } : undefined
  }
  const m = (f) => median(ok.map(f))
  return {
    rounds: ok.length,
    failed: failed.length,
    error: failed[0]?.error,
    msgsPerS: m((r) => r.msgs_per_s),
    mbPerS: m((r) => r.mb_per_s),
    connsPerS: m((r) => r.conns_per_s),
    rttP50: m((r) => r.rtt_p50_us),
    rttP90: m((r) => r.rtt_p90_us),
    rttP99: m((r) => r.rtt_p99_us),
    rttP999: m((r) => r.rtt_p999_us),
    rttMean: m((r) => r.rtt_mean_us),
    closeP50: m((r) => r.close_p50_us),
    closeP99: m((r) => r.close_p99_us),
    upgradeP50: m((r) => r.connect_p50_us),
    tcpEndP50: m((r) => r.eof_p50_us),
    clientUsPerUnit: m((r) => r.client_cpu_us_per_unit),
    serverUsPerUnit: m((r) => r.server_cpu_us_per_unit),
    clientCores: m((r) => r.client_cpu_s / r.wall_s),
    serverCores: m((r) => r.server_cpu_s / r.wall_s),
    // Busy time of the whole machine that was neither loadgen nor the server (other work,
    // and kernel time not charged to either).
    otherCores: m((r) => Math.max(0, r.machine_cpu_s - r.client_cpu_s - r.server_cpu_s) / r.wall_s),
    // The spread of the figures the tables show: [min, max] over the rounds.
    spread: {
      msgsPerS: range(ok.map((r) => r.msgs_per_s)),
      mbPerS: range(ok.map((r) => r.mb_per_s)),
      connsPerS: range(ok.map((r) => r.conns_per_s)),
      rttP50: range(ok.map((r) => r.rtt_p50_us)),
      serverUsPerUnit: range(ok.map((r) => r.server_cpu_us_per_unit)),
      clientCores: range(ok.map((r) => r.client_cpu_s / r.wall_s)),
    },
    badEchoes: ok.reduce((sum, r) => sum + (r.bad_echoes ?? 0), 0),
    errors: ok.reduce((sum, r) => sum + (r.errors ?? 0), 0),
  }
}

function idleRow(rounds) {
  const ok = rounds.filter((r) => !r.error)
  const failed = rounds.filter((r) => r.error)
  if (ok.length === 0) {
    return failed.length ? { rounds: 0, failed: failed.length, error: failed[0].error } : undefined
  }
  const m = (f) => median(ok.map(f), true)
  return {
    rounds: ok.length,
    failed: failed.length,
    error: failed[0]?.error,
    conns: m((r) => r.conns),
    rssPerConn: m((r) => r.rssPerConn),
    spread: {
      rssPerConn: range(
        ok.map((r) => r.rssPerConn),
        true,
      ),
      heapPerConn: range(
        ok.map((r) => r.heapPerConn),
        true,
      ),
    },
    heapPerConn: m((r) => r.heapPerConn),
    baseRss: m((r) => r.baseRss),
    openS: m((r) => r.openS),
  }
}

/** The row of one server from all its rounds. */
export function summarize(row) {
  return {
    name: row.name,
    unavailable: row.unavailable,
    small: throughputRow(row.small),
    large: throughputRow(row.large),
    churn: throughputRow(row.churn),
    latency: throughputRow(row.latency ?? []),
    ...Object.fromEntries(
      Object.keys(CHANNEL_WORKLOADS)
        .filter((w) => row[w]?.length)
        .map((w) => [w, throughputRow(row[w])]),
    ),
    idle: idleRow(row.idle),
  }
}
