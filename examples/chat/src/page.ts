/**
 * The chat's web page: HTML with inline CSS and JavaScript, no build step.
 *
 * It joins a room (from the form, or `/?room=lobby&name=alice`), shows the connection state
 * (connecting, open, closed with the code and reason), lists messages and join and leave notices,
 * keeps the list of members from what the room says (answering `join` and `rollcall` with
 * `{"here": true}`, so that a newcomer learns who is there), and reconnects with exponential back-off, capped at 10 s, unless the server refused the input
 * (1003, 1007, 1008, 1009): the same input would be refused again.
 * @module
 */

/** The page served at `/`. Its script avoids template literals, so this one holds it verbatim. */
export const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Handshake chat</title>
<style>
  :root { font-family: system-ui, sans-serif; color-scheme: light dark; }
  body { max-width: 42rem; margin: 0 auto; padding: 1rem; display: grid; gap: 0.75rem; }
  header { display: flex; align-items: baseline; justify-content: space-between; gap: 1rem; }
  h1 { font-size: 1.25rem; margin: 0; }
  #status { font-size: 0.875rem; padding: 0.125rem 0.5rem; border-radius: 1rem; background: #8884; }
  #status[data-state="open"] { background: #2a84; }
  #status[data-state="connecting"] { background: #fa04; }
  #status[data-state="closed"] { background: #e334; }
  form { display: flex; gap: 0.5rem; }
  input { flex: 1; font: inherit; padding: 0.25rem 0.5rem; }
  #members { font-size: 0.875rem; opacity: 0.8; min-height: 1.25em; margin: 0; }
  #log { list-style: none; margin: 0; padding: 0.5rem; height: 50vh; overflow-y: auto;
         border: 1px solid #8886; border-radius: 0.25rem; }
  #log li { padding: 0.125rem 0; overflow-wrap: anywhere; }
  #log .notice, #log .system { font-style: italic; opacity: 0.7; }
  #log .system { color: #c33; }
</style>
</head>
<body>
<header>
  <h1>Handshake chat</h1>
  <output id="status" data-state="idle">not connected</output>
</header>
<form id="join">
  <input name="name" placeholder="Your name" required autocomplete="nickname">
  <input name="room" placeholder="Room" value="lobby" required pattern="[A-Za-z0-9_\\-]{1,32}">
  <button>Join</button>
</form>
<p id="members"></p>
<ol id="log" aria-live="polite"></ol>
<form id="say">
  <input name="text" placeholder="Say something" autocomplete="off" disabled>
  <button disabled>Send</button>
</form>
<script>
  const BASE_DELAY_MS = 500
  const MAX_DELAY_MS = 10000
  // The server refused our input: retrying with the same name or messages would fail again.
  const NO_RETRY = new Set([1003, 1007, 1008, 1009])

  const statusEl = document.getElementById('status')
  const membersEl = document.getElementById('members')
  const logEl = document.getElementById('log')
  const joinForm = document.getElementById('join')
  const sayForm = document.getElementById('say')

  let socket = null
  let target = null
  // Names, not connections: no process knows every member, so the room tells us.
  let members = new Set()
  let attempt = 0
  let retryTimer = 0

  function setStatus(state, text) {
    statusEl.dataset.state = state
    statusEl.textContent = text
  }

  function setCanSay(enabled) {
    for (const el of sayForm.elements) el.disabled = !enabled
    if (enabled) sayForm.elements.text.focus()
  }

  function showMembers() {
    membersEl.textContent = 'In the room: ' + [...members].sort().join(', ')
  }

  function log(kind, text, who) {
    const item = document.createElement('li')
    item.className = kind
    if (who !== undefined) {
      const name = document.createElement('b')
      name.textContent = who + ': '
      item.append(name)
    }
    item.append(text)
    logEl.append(item)
    logEl.scrollTop = logEl.scrollHeight
  }

  function connect() {
    clearTimeout(retryTimer)
    const url = new URL('/ws/' + encodeURIComponent(target.room), location.href)
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:'
    url.searchParams.set('name', target.name)
    setStatus('connecting', 'connecting')
    members = new Set()
    const ws = new WebSocket(url)
    socket = ws
    ws.onopen = () => {
      attempt = 0
      setStatus('open', 'open: ' + target.room + ' as ' + target.name)
      setCanSay(true)
    }
    ws.onmessage = (event) => {
      const data = JSON.parse(event.data)
      if (data.type === 'message') return log('message', data.text, data.name)
      if (data.type === 'join') {
        log('notice', data.name + ' joined')
        // Our own join starts the list; anyone else's gets our answer, so they see us.
        if (data.name === target.name && members.size === 0) members = new Set([target.name])
        else ws.send(JSON.stringify({ here: true }))
        members.add(data.name)
      } else if (data.type === 'here') {
        members.add(data.name)
      } else if (data.type === 'leave') {
        log('notice', data.name + ' left')
        members.delete(data.name)
        members.add(target.name)
      } else if (data.type === 'rollcall') {
        // The server missed some notices: rebuild the list from the answers.
        members = new Set([target.name])
        ws.send(JSON.stringify({ here: true }))
      }
      showMembers()
    }
    ws.onclose = (event) => {
      if (socket !== ws) return // replaced by a newer connection: nothing to report
      setCanSay(false)
      members = new Set()
      membersEl.textContent = ''
      const closed = 'closed ' + event.code + (event.reason ? ' ' + event.reason : '')
      log('system', 'Disconnected (' + event.code + (event.reason ? ': ' + event.reason : '') + ')')
      if (NO_RETRY.has(event.code)) return setStatus('closed', closed)
      // Exponential back-off, capped, with jitter so a restarted server is not hit all at once.
      const delay = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** attempt++) * (0.5 + Math.random() / 2)
      setStatus('closed', closed + '; retrying in ' + (delay / 1000).toFixed(1) + ' s')
      retryTimer = setTimeout(connect, delay)
    }
  }

  joinForm.onsubmit = (event) => {
    event.preventDefault()
    target = { name: joinForm.elements.name.value.trim(), room: joinForm.elements.room.value.trim() }
    history.replaceState(null, '', '?' + new URLSearchParams(target))
    const previous = socket
    socket = null
    if (previous) previous.close(1000, 'Switching rooms')
    attempt = 0
    connect()
  }

  sayForm.onsubmit = (event) => {
    event.preventDefault()
    const text = sayForm.elements.text.value.trim()
    if (!text || !socket || socket.readyState !== WebSocket.OPEN) return
    socket.send(JSON.stringify({ text }))
    sayForm.elements.text.value = ''
  }

  const params = new URLSearchParams(location.search)
  if (params.get('room')) joinForm.elements.room.value = params.get('room')
  if (params.get('name')) {
    joinForm.elements.name.value = params.get('name')
    joinForm.requestSubmit()
  }
</script>
</body>
</html>
`
