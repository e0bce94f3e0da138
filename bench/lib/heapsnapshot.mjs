/**
 * Reading V8-format heap snapshots (Node, Deno through the inspector, Bun's
 * `generateHeapSnapshot('v8')`) and grouping their objects by what they are: the constructor of
 * an object, the name of a closure (with where it was defined), the variables a closure context
 * holds, the kind of string or array.
 */
import { readFileSync } from 'node:fs'

/** The snapshot, with the columns of its flat arrays resolved. */
export function loadSnapshot(path) {
  const json = JSON.parse(readFileSync(path, 'utf8'))
  const meta = json.snapshot.meta
  const nodeFields = meta.node_fields
  const edgeFields = meta.edge_fields
  const nodeTypes = meta.node_types[0]
  const edgeTypes = meta.edge_types[0]
  const nf = nodeFields.length
  const ef = edgeFields.length
  const col = (fields, name) => fields.indexOf(name)
  const n = {
    type: col(nodeFields, 'type'),
    name: col(nodeFields, 'name'),
    id: col(nodeFields, 'id'),
    size: col(nodeFields, 'self_size'),
    edges: col(nodeFields, 'edge_count'),
  }
  const e = {
    type: col(edgeFields, 'type'),
    name: col(edgeFields, 'name_or_index'),
    to: col(edgeFields, 'to_node'),
  }
  const nodes = json.nodes
  const edges = json.edges
  const strings = json.strings
  const count = nodes.length / nf
  // The index of each node's first edge.
  const firstEdge = new Uint32Array(count + 1)
  for (let i = 0, offset = 0; i < count; i++) {
    firstEdge[i] = offset
    offset += nodes[i * nf + n.edges] * ef
    firstEdge[i + 1] = offset
  }
  // Where each closure was defined, when the snapshot says (Node and Deno do).
  const locations = new Map()
  const lf = meta.location_fields?.length ?? 4
  const loc = json.locations ?? []
  for (let i = 0; i + lf - 1 < loc.length; i += lf) {
    locations.set(loc[i] / nf, { script: loc[i + 1], line: loc[i + 2], column: loc[i + 3] })
  }
  return {
    count,
    typeOf: (i) => nodeTypes[nodes[i * nf + n.type]],
    nameOf: (i) => strings[nodes[i * nf + n.name]],
    idOf: (i) => nodes[i * nf + n.id],
    sizeOf: (i) => nodes[i * nf + n.size],
    /** Calls fn(edgeType, edgeName, toNode) for each edge of node i. */
    eachEdge(i, fn) {
      for (let k = firstEdge[i]; k < firstEdge[i + 1]; k += ef) {
        const type = edgeTypes[edges[k + e.type]]
        const raw = edges[k + e.name]
        const name = type === 'element' || type === 'hidden' ? raw : strings[raw]
        if (fn(type, name, edges[k + e.to] / nf) === false) return
      }
    },
    locations,
  }
}

/** A short, machine-independent form of a script URL. */
function shortScript(url) {
  return String(url)
    .replace(/^file:\/\//, '')
    .replace(/^.*\/node_modules\/\.pnpm\/[^/]+\/node_modules\//, '')
    .replace(/^.*\/node_modules\//, '')
    .replace(/^.*\/(packages|bench)\//, '$1/')
}

/** For each node, its first strong retainer (-1 for none) and the name of that edge. */
function firstRetainers(snap) {
  const parent = new Int32Array(snap.count).fill(-1)
  const edge = new Array(snap.count)
  for (let i = 0; i < snap.count; i++) {
    snap.eachEdge(i, (type, name, to) => {
      if (parent[to] !== -1 || type === 'weak' || type === 'shortcut') return
      parent[to] = i
      edge[to] = edgeLabel(type, name)
    })
  }
  return { parent, edge }
}

function edgeLabel(type, name) {
  if (type === 'element' || /^\d+$/.test(String(name))) return '[]'
  return type === 'hidden' ? '(hidden)' : String(name)
}

/**
 * The retained size of every node: its own size plus that of every node it dominates (that
 * becomes unreachable without it), as DevTools computes it. Weak edges do not retain. Uses the
 * iterative algorithm of Cooper, Harvey and Kennedy from the snapshot's root (node 0).
 */
export function retainedSizes(snap) {
  const n = snap.count
  // Successors, then predecessors, as compressed arrays.
  const succStart = new Uint32Array(n + 1)
  const succ = []
  for (let i = 0; i < n; i++) {
    succStart[i] = succ.length
    snap.eachEdge(i, (type, _name, to) => {
      if (type !== 'weak') succ.push(to)
    })
  }
  succStart[n] = succ.length
  // Postorder by an iterative depth-first walk from the root.
  const order = new Int32Array(n).fill(-1)
  const post = new Int32Array(n)
  let count = 0
  const stack = [0]
  const next = new Uint32Array(n)
  const seen = new Uint8Array(n)
  seen[0] = 1
  for (let i = 0; i < n; i++) next[i] = succStart[i]
  while (stack.length) {
    const v = stack[stack.length - 1]
    if (next[v] < succStart[v + 1]) {
      const w = succ[next[v]++]
      if (!seen[w]) {
        seen[w] = 1
        stack.push(w)
      }
    } else {
      stack.pop()
      order[v] = count
      post[count++] = v
    }
  }
  const predCount = new Uint32Array(n + 1)
  for (let v = 0; v < n; v++) {
    if (!seen[v]) continue
    for (let k = succStart[v]; k < succStart[v + 1]; k++) predCount[succ[k] + 1]++
  }
  for (let i = 0; i < n; i++) predCount[i + 1] += predCount[i]
  const pred = new Int32Array(predCount[n])
  const fill = predCount.slice(0, n)
  for (let v = 0; v < n; v++) {
    if (!seen[v]) continue
    for (let k = succStart[v]; k < succStart[v + 1]; k++) pred[fill[succ[k]]++] = v
  }
  const idom = new Int32Array(n).fill(-1)
  idom[0] = 0
  const intersect = (a, b) => {
    while (a !== b) {
      while (order[a] < order[b]) a = idom[a]
      while (order[b] < order[a]) b = idom[b]
    }
    return a
  }
  for (let changed = true; changed; ) {
    changed = false
    for (let k = count - 2; k >= 0; k--) {
      const v = post[k]
      let d = -1
      for (let j = predCount[v]; j < predCount[v + 1]; j++) {
        const p = pred[j]
        if (idom[p] === -1) continue
        d = d === -1 ? p : intersect(p, d)
      }
      if (d !== -1 && idom[v] !== d) {
        idom[v] = d
        changed = true
      }
    }
  }
  const retained = new Float64Array(n)
  for (let i = 0; i < n; i++) retained[i] = snap.sizeOf(i)
  // Children before their dominators: postorder does that.
  for (let k = 0; k < count - 1; k++) {
    const v = post[k]
    if (idom[v] >= 0 && idom[v] !== v) retained[idom[v]] += retained[v]
  }
  retained.idom = idom
  return retained
}

/**
 * Splits the new objects' bytes among owners, without overlap: each new object goes to the
 * nearest object above it in the dominator tree whose label an owner's pattern matches (what
 * would be freed with it first), else to "other". `owners` is a list of [name, RegExp].
 */
function ownersOf(snap, labels, retained, isNew, owners) {
  const idom = retained.idom
  const out = {}
  const memo = new Int32Array(snap.count).fill(-2)
  const ownerAt = (i) => {
    for (const [k, [, pattern]] of owners.entries()) if (pattern.test(labels[i])) return k
    return -1
  }
  const resolve = (start) => {
    const path = []
    let v = start
    let found = -1
    while (v >= 0 && v !== 0) {
      if (memo[v] !== -2) {
        found = memo[v]
        break
      }
      path.push(v)
      const here = ownerAt(v)
      if (here >= 0) {
        found = here
        break
      }
      if (idom[v] === v) break
      v = idom[v]
    }
    for (const p of path) memo[p] = found
    return found
  }
  for (let i = 0; i < snap.count; i++) {
    if (!isNew[i]) continue
    const k = resolve(i)
    const name = k >= 0 ? owners[k][0] : 'other'
    out[name] = (out[name] ?? 0) + snap.sizeOf(i)
  }
  return out
}

// Objects whose own name says little: they are labelled with who holds them as well. Bun's
// snapshots name no closure ("Function"): there the holder is the only name there is.
const GENERIC =
  /^(\((string|concatenated string|sliced string|number)\)|array |hidden |object shape |Array$|Map$|Set$|Promise$|closure \(anonymous\)$|closure Function$|AsyncFunctionGenerator$|\{)/

/**
 * Labels every node with its group. Closures are named `name (script:line)` where the snapshot
 * links them to their script; contexts by the variables they hold; plain objects by their first
 * properties; suspended async functions by their function; objects with a generic name (strings,
 * arrays, promises, internal arrays) also by the holder and the edge that holds them.
 */
export function labelNodes(snap) {
  const base = new Array(snap.count)
  // Script URLs: closure -shared-> SharedFunctionInfo -script-> Script -name-> string.
  const scriptName = new Map()
  const edgeTo = (i, wanted) => {
    let found
    snap.eachEdge(i, (_type, name, to) => {
      if (name === wanted) {
        found = to
        return false
      }
    })
    return found
  }
  const scriptOf = (closure) => {
    const shared = edgeTo(closure, 'shared')
    if (shared === undefined) return undefined
    if (scriptName.has(shared)) return scriptName.get(shared)
    let url
    const script = edgeTo(shared, 'script') ?? edgeTo(shared, 'script_or_debug_info')
    if (script !== undefined) {
      const name = edgeTo(script, 'name')
      if (name !== undefined && snap.typeOf(name).includes('string')) url = snap.nameOf(name)
    }
    scriptName.set(shared, url)
    return url
  }
  const closureLabel = (i) => {
    const where = snap.locations.get(i)
    const url = scriptOf(i)
    const at = url ? ` ${shortScript(url)}${where ? `:${where.line + 1}` : ''}` : ''
    return `closure ${snap.nameOf(i) || '(anonymous)'}${at}`
  }
  for (let i = 0; i < snap.count; i++) {
    const type = snap.typeOf(i)
    const name = snap.nameOf(i)
    let label
    if (type === 'string' || type === 'concatenated string' || type === 'sliced string') {
      label = `(${type})`
    } else if (type === 'number' || type === 'bigint' || type === 'symbol') {
      label = `(${type})`
    } else if (type === 'closure') {
      label = closureLabel(i)
    } else if (name === 'system / Context' || name === 'system / JSLexicalEnvironment') {
      // V8's closure contexts name their variables with `context` edges; JSC's lexical
      // environments (Bun) with named edges of their own.
      const vars = []
      snap.eachEdge(i, (edgeType, edgeName) => {
        if (
          edgeType === 'context' ||
          (name === 'system / JSLexicalEnvironment' &&
            (edgeType === 'property' || edgeType === 'variable') &&
            edgeName)
        )
          vars.push(edgeName)
      })
      label = `Context {${vars.slice(0, 5).join(', ')}${vars.length > 5 ? ', …' : ''}}`
    } else if (type === 'code') {
      // Compiled code, bytecode and function metadata: grouped by kind, not per function.
      label = `code ${name.startsWith('system / ') ? name.slice(9) : '(function data)'}`
    } else if (type === 'object' && (name === 'Object' || name === '')) {
      const props = []
      snap.eachEdge(i, (edgeType, edgeName) => {
        if (edgeType === 'property' && props.length < 6) props.push(String(edgeName))
      })
      label = `{${props.slice(0, 5).join(', ')}${props.length > 5 ? ', …' : ''}}`
    } else if (type === 'object' && (name === 'Generator' || name === 'AsyncFunction')) {
      const fn = edgeTo(i, 'function')
      label = `async frame of ${fn === undefined ? '?' : closureLabel(fn).slice(8)}`
    } else if (type === 'object' || type === 'native' || type === 'regexp') {
      label = type === 'object' ? name : `${type} ${name}`
    } else {
      label = `${type} ${name}`
    }
    base[i] = label
  }
  const { parent, edge } = firstRetainers(snap)
  const cut = (text, n) => (text.length > n ? `${text.slice(0, n - 3)}...` : text)
  // Two holders up at most: `array ← (Map ← _HeadersList.<symbol headers map>).table`.
  const full = (i, depth) => {
    const label = base[i]
    if (depth === 0 || !GENERIC.test(label) || parent[i] < 0) return label
    const up = full(parent[i], depth - 1)
    const holder = up === base[parent[i]] ? cut(up, 60) : `(${up})`
    return `${label} ← ${holder}.${edge[i]}`
  }
  const labels = new Array(snap.count)
  for (let i = 0; i < snap.count; i++) labels[i] = cut(full(i, 2), 160)
  return labels
}

/**
 * Counts and self sizes per group. With `since` (a Set of node ids from an earlier snapshot of
 * the same process), also which of the nodes are new, what the new ones retain (what would be
 * freed without them), and who holds them.
 */
export function summarizeSnapshot(path, since, owners) {
  const snap = loadSnapshot(path)
  const labels = labelNodes(snap)
  const groups = new Map()
  let total = 0
  const ids = new Set()
  const isNew = new Uint8Array(snap.count)
  const retained = since ? retainedSizes(snap) : undefined
  for (let i = 0; i < snap.count; i++) {
    const id = snap.idOf(i)
    ids.add(id)
    const size = snap.sizeOf(i)
    total += size
    const g = groups.get(labels[i]) ?? {
      count: 0,
      bytes: 0,
      newCount: 0,
      newRetained: 0,
      retainers: new Map(),
    }
    g.count++
    g.bytes += size
    if (since && !since.has(id)) {
      g.newCount++
      g.newRetained += retained[i]
      isNew[i] = 1
    }
    groups.set(labels[i], g)
  }
  // Retainers of the new nodes: the group of the holder and the edge's name.
  if (since) {
    for (let i = 0; i < snap.count; i++) {
      snap.eachEdge(i, (type, name, to) => {
        if (!isNew[to] || type === 'weak' || type === 'shortcut') return
        const edge = edgeLabel(type, name)
        const key = `${labels[i]} → ${edge}`
        const r = groups.get(labels[to]).retainers
        r.set(key, (r.get(key) ?? 0) + 1)
      })
    }
  }
  const owned = since && owners ? ownersOf(snap, labels, retained, isNew, owners) : undefined
  return { groups, total, ids, nodes: snap.count, owned }
}

/** The per-connection difference of two summaries of one process, by group. */
export function diffSummaries(before, after, conns) {
  const out = new Map()
  const keys = new Set([...before.groups.keys(), ...after.groups.keys()])
  for (const key of keys) {
    const a = before.groups.get(key) ?? { count: 0, bytes: 0 }
    const b = after.groups.get(key) ?? { count: 0, bytes: 0, retainers: new Map() }
    const count = (b.count - a.count) / conns
    const bytes = (b.bytes - a.bytes) / conns
    if (Math.abs(count) < 0.05 && Math.abs(bytes) < 4 && (b.newRetained ?? 0) / conns < 16) continue
    const retainers = [...(b.retainers ?? new Map())]
      .sort((x, y) => y[1] - x[1])
      .slice(0, 2)
      .map(([k, v]) => `${k} (${(v / conns).toFixed(1)})`)
    const retained = (b.newRetained ?? 0) / conns
    const newCount = (b.newCount ?? 0) / conns
    out.set(key, { count, bytes, retainers, retained, newCount })
  }
  const owned = after.owned
    ? Object.fromEntries(Object.entries(after.owned).map(([k, v]) => [k, v / conns]))
    : undefined
  return { groups: out, bytes: (after.total - before.total) / conns, owned }
}
