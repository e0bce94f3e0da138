/**
 * The page's script, bundled for the browser by `pnpm build` and served at `/chat.js`.
 * `@handshake/client` does the connection: it reconnects with backoff (not after the server
 * refused the input), resumes each room from the last message received, and answers requests.
 * The types come from the server's `chat`. Messages are shown as text, never as HTML.
 * @module
 */
import { type ClientState, createClient, type Subscription } from '@handshake/client'
import type { chat } from './app.ts'

const byId = <T = HTMLElement>(id: string) => document.getElementById(id) as T
const statusEl = byId('status')
const membersEl = byId('members')
const logEl = byId('log')
const [joinForm, sayForm] = [byId<HTMLFormElement>('join'), byId<HTMLFormElement>('say')]
const field = (form: HTMLFormElement, name: string) =>
  form.elements.namedItem(name) as HTMLInputElement
const el = <K extends keyof HTMLElementTagNameMap>(tag: K, props: object = {}) =>
  Object.assign(document.createElement(tag), props)

const params = new URLSearchParams(location.search)
const me = params.get('name')?.trim() ?? ''
let room = ''
let subscription: Subscription | undefined
// What this page said (its last HISTORY_SIZE messages): a resume gives them back from the
// history, before the room's `subscribed`, and those shown already are skipped then. A live
// message is never skipped: another tab may have the same name and say the same words.
const mine: string[] = []
const HISTORY_SIZE = 100
let resuming = false

function log(kind: 'message' | 'notice' | 'system', text: string, who?: string): void {
  const item = el('li', { className: kind })
  item.append(...(who === undefined ? [] : [el('b', { textContent: `${who}: ` })]), text)
  logEl.append(item)
  logEl.scrollTo(0, logEl.scrollHeight)
}

/** The room's members, by name (a name in two tabs once), from the topic's presence. */
function showMembers(members: ReadonlyMap<string, { name: string }>): void {
  const names = new Set([...members.values()].map((member) => member.name))
  membersEl.textContent = names.size ? `In the room: ${[...names].sort().join(', ')}` : ''
}

function showState(state: ClientState): void {
  statusEl.dataset.state = state.status
  for (const el of sayForm.elements) (el as HTMLInputElement).disabled = state.status !== 'open'
  statusEl.textContent = state.status === 'open' ? `open: ${room} as ${me}` : state.status
  if (state.status === 'open') void listRooms()
  if (state.status !== 'reconnecting' && state.status !== 'closed') return
  resuming = true
  const closed = `${state.code}${state.reason ? `: ${state.reason}` : ''}`
  log('system', `Disconnected (${closed})`)
  showMembers(new Map())
  if (state.status === 'reconnecting') statusEl.textContent += ` in ${state.delay} ms`
}

/** The `rooms` request: the rooms with someone in them, each a button that enters it. */
async function listRooms(): Promise<void> {
  const rooms = await client?.request('rooms', {}).catch(() => undefined)
  const items = (rooms ?? []).map(({ room: name, members: count }) => {
    const item = el('li')
    item.append(el('button', { textContent: `${name} (${count})`, onclick: () => enter(name) }))
    return item
  })
  byId('rooms').replaceChildren(...items)
}

/**
 * Leaves the current room, if any (the others see it leave), and enters `next`: its messages
 * and its members. Subscribing makes this page a member: the server sends the list, then who
 * joins and leaves.
 */
function enter(next: string): void {
  if (!client) return
  subscription?.unsubscribe()
  room = next
  field(joinForm, 'room').value = room
  history.replaceState(null, '', `?${new URLSearchParams({ room, name: me })}`)
  let listed = false
  let self: string | undefined
  subscription = client.subscribe(`rooms/${room}`, {
    message: ({ name, text }) => {
      const own = resuming && name === me ? mine.indexOf(text) : -1
      if (own === -1) log('message', text, name)
      else mine.splice(own, 1)
    },
    subscribed: () => {
      resuming = false
      mine.splice(0)
    },
    gap: () => log('system', 'Some messages were lost while disconnected'),
    error: (err) => log('system', err.message),
    presence: (members, { joins, leaves }) => {
      showMembers(members)
      void listRooms()
      // A new list comes with each connection's subscription, with this page's new id in it.
      const before = self
      self = subscription?.self
      if (self !== before) log('notice', `${me} joined`)
      // The first list: the ones here already are no news. After a reconnect, the new list
      // says who came and went meanwhile.
      if (!listed) {
        listed = true
        return
      }
      const others = (member: { id: string }) => member.id !== self && member.id !== before
      for (const { meta } of leaves.filter(others)) log('notice', `${meta.name} left`)
      for (const { meta } of joins.filter(others)) log('notice', `${meta.name} joined`)
    },
  })
}

// One client for the page's name (from `/?room=lobby&name=alice`): another name loads the page.
const client = me
  ? createClient<typeof chat>(`/ws?${new URLSearchParams({ name: me })}`, { maxDelay: 10_000 })
  : undefined
field(joinForm, 'name').value = me
field(joinForm, 'room').value = params.get('room')?.trim() || 'lobby'
client?.onState(showState)
enter(field(joinForm, 'room').value)

joinForm.onsubmit = (event) => {
  event.preventDefault()
  const name = field(joinForm, 'name').value.trim()
  const next = field(joinForm, 'room').value.trim()
  if (name === me) enter(next)
  else location.search = `?${new URLSearchParams({ room: next, name })}`
}

sayForm.onsubmit = (event) => {
  event.preventDefault()
  const text = field(sayForm, 'text').value.trim()
  field(sayForm, 'text').value = ''
  if (!text) return
  // Shown once the server took it: the sender does not get its own message back.
  client?.publish(`rooms/${room}`, { text }, { ack: true }).then(
    () => {
      if (mine.push(text) > HISTORY_SIZE) mine.shift()
      log('message', text, me)
    },
    (err: Error) => log('system', `Not sent: ${err.message}`),
  )
}
