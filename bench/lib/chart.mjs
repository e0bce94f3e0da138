/**
 * The chart, as hand-written SVG: for each workload a panel, for each runtime a group of bars,
 * each bar a server's throughput as a ratio to that runtime's raw server (raw = 1).
 */
import { KINDS } from './runtimes.mjs'
import { WORKLOADS } from './stats.mjs'

const COLORS = {
  raw: '#9e9e9e',
  hono: '#ff7f0e',
  crossws: '#1f77b4',
  handshake: '#2ca02c',
  events: '#98df8a',
}
const LABELS = {
  raw: 'raw runtime server',
  hono: "Hono's helper",
  crossws: 'crossws',
  handshake: 'Handshake',
  events: 'Handshake, event controller',
}

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;')

/** The SVG text. */
export function renderChart(results) {
  const workloads = Object.keys(WORKLOADS)
  const panelW = 330
  const panelH = 260
  const top = 70
  const left = 50
  const width = left + workloads.length * panelW + 10
  const height = top + panelH + 60
  const ratios = []
  for (const rt of results)
    for (const w of workloads)
      for (const kind of KINDS) {
        const raw = rt.rows.raw[w]?.[WORKLOADS[w].metric]
        const v = rt.rows[kind][w]?.[WORKLOADS[w].metric]
        if (!rt.rows[kind].unavailable && raw && v !== undefined) ratios.push(v / raw)
      }
  const yMax = Math.max(1.2, Math.ceil(Math.max(...ratios, 1) * 10) / 10 + 0.1)
  const y = (r) => top + panelH - (r / yMax) * panelH
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="${left}" y="18" font-size="14" font-weight="bold">Throughput as a ratio to the raw runtime server (higher is better; dashed line: 0.95)</text>`,
  ]
  KINDS.forEach((kind, i) => {
    const x = left + i * 170
    out.push(
      `<rect x="${x}" y="30" width="12" height="12" fill="${COLORS[kind]}"/>`,
      `<text x="${x + 16}" y="40">${esc(LABELS[kind])}</text>`,
    )
  })
  workloads.forEach((w, p) => {
    const x0 = left + p * panelW
    out.push(
      `<text x="${x0 + panelW / 2 - 10}" y="${top - 8}" text-anchor="middle" font-weight="bold">${esc(WORKLOADS[w].title)} (${WORKLOADS[w].unit})</text>`,
    )
    for (const tick of [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2].filter((t) => t <= yMax)) {
      out.push(
        `<line x1="${x0}" x2="${x0 + panelW - 20}" y1="${y(tick)}" y2="${y(tick)}" stroke="${tick === 1 ? '#444' : '#e5e5e5'}"/>`,
      )
      if (p === 0)
        out.push(
          `<text x="${x0 - 6}" y="${y(tick) + 4}" text-anchor="end">${tick.toFixed(2)}</text>`,
        )
    }
    out.push(
      `<line x1="${x0}" x2="${x0 + panelW - 20}" y1="${y(0.95)}" y2="${y(0.95)}" stroke="#d62728" stroke-dasharray="4 3"/>`,
    )
    const groupW = (panelW - 20) / results.length
    results.forEach((rt, g) => {
      const gx = x0 + g * groupW
      const barW = (groupW - 12) / KINDS.length
      const raw = rt.rows.raw[w]?.[WORKLOADS[w].metric]
      KINDS.forEach((kind, b) => {
        const bx = gx + 6 + b * barW
        const v = rt.rows[kind][w]?.[WORKLOADS[w].metric]
        if (rt.rows[kind].unavailable || !raw || v === undefined) {
          out.push(
            `<text x="${bx + barW / 2}" y="${y(0) - 4}" text-anchor="middle" font-size="8" fill="#888" transform="rotate(-90 ${bx + barW / 2} ${y(0) - 4})">n/a</text>`,
          )
          return
        }
        const r = v / raw
        out.push(
          `<rect x="${bx}" y="${y(r)}" width="${barW - 2}" height="${y(0) - y(r)}" fill="${COLORS[kind]}"><title>${esc(rt.name)} ${esc(rt.rows[kind].name)}: ${r.toFixed(2)}× raw</title></rect>`,
          `<text x="${bx + barW / 2 - 1}" y="${y(r) - 3}" text-anchor="middle" font-size="8">${r.toFixed(2)}</text>`,
        )
      })
      out.push(
        `<text x="${gx + groupW / 2}" y="${y(0) + 16}" text-anchor="middle">${esc(rt.name)}</text>`,
      )
    })
  })
  out.push(
    `<text x="${left}" y="${height - 12}" fill="#555">Each runtime is compared only with itself: bars are medians of interleaved rounds; see BENCHMARKS.md for absolute figures.</text>`,
    '</svg>',
  )
  return `${out.join('\n')}\n`
}
