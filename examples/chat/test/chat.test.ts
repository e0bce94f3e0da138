/**
 * The chat's channels against the in-memory test kit (`@handshake/core/testing`), frame by frame
 * as the README's protocol says: the member lists (presence), messages, history, the `rooms`
 * request, every refusal, the slow member, two servers on one backplane, and a room that
 * hibernates.
 */
import { createHub } from '@handshake/core/adapter'
import { CHANNEL_PROTOCOL } from '@handshake/core/channels'
import { connect, hibernatable, hub, memoryBackplane, type TestPeer } from '@handshake/core/testing'
import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  app,
  chat,
  MAX_BUFFERED_BYTES,
  MAX_MESSAGE_BYTES,
  MAX_NAME_LENGTH,
  MAX_TEXT_LENGTH,
  useRoomHistory,
} from '../src/app.ts'

// The rooms are topics of the kit's hub, shared by the tests (as a server's are).
const { topics } = hub
useRoomHistory(topics)

const peers: TestPeer[] = []
let rooms = 0
let ids = 0

/** A room no other test uses. */
function freshRoom(): string {
  rooms += 1
  return `room-${rooms}`
}

// biome-ignore lint/suspicious/noExplicitAny: frames are JSON, checked by the assertions
type Frame = Record<string, any>

function send(peer: TestPeer, frame: Frame): number {
  const id = ++ids
  peer.send(JSON.stringify({ id, ...frame }))
  return id
}

async function next(peer: TestPeer): Promise<Frame> {
  const msg = await peer.read()
  if (msg.type !== 'text') throw new Error('expected a text message')
  return JSON.parse(msg.data) as Frame
}

/** What a member receives on a topic: `{ type: 'message', topic, data }`. */
const message = (topic: string, data: unknown) => ({ type: 'message', topic, data })

/** A presence diff of a room: the names that joined and left. */
const presence = (room: string, joins: string[], leaves: string[] = []) => ({
  type: 'presence',
  topic: `rooms/${room}`,
  joins: joins.map((name) => ({ id: expect.any(String), meta: { name } })),
  leaves: leaves.map((name) => ({ id: expect.any(String), meta: { name } })),
})

async function open(name: string, options: { hub?: typeof hub } = {}): Promise<TestPeer> {
  const peer = await connect(app, `/ws?name=${encodeURIComponent(name)}`, {
    protocols: [CHANNEL_PROTOCOL],
    ...options,
  })
  peers.push(peer)
  return peer
}

/**
 * Opens a connection that enters the room (subscribes: it is a member from then on), and
 * returns it with the room's member list, by name, as the server sent it.
 */
async function enter(room: string, name: string, options: { hub?: typeof hub } = {}) {
  const peer = await open(name, options)
  const topic = `rooms/${room}`
  const id = send(peer, { type: 'subscribe', topic })
  expect(await next(peer)).toMatchObject({ type: 'subscribed', id, topic })
  const list = await next(peer)
  expect(list).toMatchObject({ type: 'presence', topic, self: expect.any(String) })
  const names = (list.members as { meta: { name: string } }[]).map((m) => m.meta.name).sort()
  return { peer, names, self: list.self as string }
}

/** Opens a connection that enters the room. */
async function join(room: string, name: string): Promise<TestPeer> {
  return (await enter(room, name)).peer
}

afterEach(async () => {
  const leaving = peers.splice(0)
  for (const peer of leaving) peer.close(1000)
  await Promise.all(leaving.map((peer) => peer.closed))
  vi.restoreAllMocks()
})

describe('chat rooms', () => {
  it('tells a member who is there, then who joins and who leaves', async () => {
    const room = freshRoom()
    const { peer: alice, names } = await enter(room, 'alice')
    expect(names).toEqual(['alice'])
    const bob = await enter(room, 'bob')
    expect(bob.names).toEqual(['alice', 'bob'])
    expect(await next(alice)).toEqual(presence(room, ['bob']))
    bob.peer.close(1001, 'tab closed')
    expect(await bob.peer.closed).toMatchObject({ code: 1001, wasClean: true })
    expect(await next(alice)).toEqual(presence(room, [], ['bob']))
    expect(topics.subscribers(`rooms/${room}`)).toBe(1)
  })

  it('a member that goes to another room leaves this one', async () => {
    const room = freshRoom()
    const alice = await join(room, 'alice')
    const bob = await join(room, 'bob')
    await next(alice)
    // What the page does: it unsubscribes from the room it leaves, and enters the other.
    send(bob, { type: 'unsubscribe', topic: `rooms/${room}` })
    await enter(freshRoom(), 'bob')
    expect(await next(alice)).toEqual(presence(room, [], ['bob']))
  })

  it('keeps the lists of two servers on one backplane right across an outage, with no roll call', async () => {
    const bus = memoryBackplane()
    const [one, two] = [createHub(), createHub()]
    const [first, second] = [bus.backplane(), bus.backplane()]
    await one.topics.useBackplane(first)
    await two.topics.useBackplane(second)
    const room = freshRoom()
    const alice = await enter(room, 'alice', { hub: one })
    const bob = await enter(room, 'bob', { hub: two })
    expect(bob.names).toEqual(['alice', 'bob'])
    expect(await next(alice.peer)).toEqual(presence(room, ['bob']))
    // The first server loses the backplane; meanwhile carol comes and bob goes on the second.
    bus.cut(first)
    const carol = await enter(room, 'carol', { hub: two })
    expect(carol.names).toEqual(['alice', 'bob', 'carol'])
    bob.peer.close(1000)
    await bob.peer.closed
    bus.restore(first)
    // Alice's list, kept from the diffs, catches up once the backplane is back.
    const list = new Map([
      [alice.self, 'alice'],
      [bob.self, 'bob'],
    ])
    while ([...list.values()].sort().join() !== 'alice,carol') {
      const diff = await next(alice.peer)
      expect(diff).toMatchObject({ type: 'presence', topic: `rooms/${room}` })
      for (const { id } of diff.leaves) expect(list.delete(id)).toBe(true)
      for (const { id, meta } of diff.joins) list.set(id, meta.name)
    }
    expect(list.get(carol.self)).toBe('carol')
  })

  it('sends a message to the rest of the room, with the sender name, and to no other room', async () => {
    const room = freshRoom()
    const alice = await join(room, 'alice')
    const bob = await join(room, 'bob')
    const elsewhere = freshRoom()
    const carol = await join(elsewhere, 'carol')
    await next(alice)

    const id = send(alice, { type: 'publish', topic: `rooms/${room}`, data: { text: ' hi bob ' } })
    expect(await next(alice)).toEqual({ type: 'ack', id })
    expect(await next(bob)).toMatchObject(
      message(`rooms/${room}`, { name: 'alice', text: 'hi bob' }),
    )
    send(carol, { type: 'publish', topic: `rooms/${elsewhere}`, data: { text: 'anyone?' } })
    await next(carol)
    send(bob, { type: 'publish', topic: `rooms/${room}`, data: { text: 'hi alice' } })
    // Bob's message is the next thing alice sees: carol's never reached this room.
    expect(await next(alice)).toMatchObject(
      message(`rooms/${room}`, { name: 'bob', text: 'hi alice' }),
    )
  })

  it("keeps a room's last messages: a member that comes back from its position gets what it missed", async () => {
    const room = freshRoom()
    const topic = `rooms/${room}`
    const alice = await open('alice')
    send(alice, { type: 'subscribe', topic })
    const { position } = await next(alice)
    expect(position).toMatchObject({ offset: expect.any(Number) })
    alice.close(1006)
    const bob = await join(room, 'bob')
    for (const text of ['one', 'two']) {
      send(bob, { type: 'publish', topic, data: { text } })
      await next(bob)
    }
    const back = await open('alice')
    const id = send(back, { type: 'subscribe', topic, since: position })
    const missed = [await next(back), await next(back)]
    expect(missed.map((frame) => frame.data)).toEqual([
      { name: 'bob', text: 'one' },
      { name: 'bob', text: 'two' },
    ])
    expect(missed.map((frame) => frame.position.offset)).toEqual([
      position.offset + 1,
      position.offset + 2,
    ])
    expect(await next(back)).toMatchObject({ type: 'subscribed', id, recovered: true })
  })

  it('lists the rooms with someone in them, and how many, for the rooms request', async () => {
    const room = freshRoom()
    const alice = await join(room, 'alice')
    await join(room, 'bob')
    await next(alice)
    const id = send(alice, { type: 'request', name: 'rooms', input: {} })
    const response = await next(alice)
    expect(response).toMatchObject({ type: 'response', id })
    expect(response.output).toContainEqual({ room, members: 2 })
  })

  it('drops a member too slow to read with 1008, and the room goes on', async () => {
    const room = freshRoom()
    const alice = await join(room, 'alice')
    const slow = await join(room, 'slow')
    await next(alice)
    slow.stopReading()

    const text = 'x'.repeat(MAX_TEXT_LENGTH)
    // Enough to pile up more than MAX_BUFFERED_BYTES for the member that does not read.
    const count = Math.ceil(MAX_BUFFERED_BYTES / text.length) + 10
    for (let i = 0; i < count; i++) {
      send(alice, { type: 'publish', topic: `rooms/${room}`, data: { text } })
    }
    const seen: Frame[] = []
    for (let i = 0; i <= count; i++) seen.push(await next(alice))
    expect(seen.filter((frame) => frame.type === 'ack')).toHaveLength(count)
    expect(seen).toContainEqual(presence(room, [], ['slow']))
    slow.startReading()
    expect(await slow.closed).toMatchObject({
      code: 1008,
      reason: `Subscriber too slow: over ${MAX_BUFFERED_BYTES} bytes of published messages unsent`,
    })
  })
})

describe('input validation', () => {
  it.each([
    ['an empty text', 'rooms', { text: '   ' }, 'invalid'],
    ['a text that is not a string', 'rooms', { text: 42 }, 'invalid'],
    ['a text over 1000 characters', 'rooms', { text: 'é'.repeat(MAX_TEXT_LENGTH + 1) }, 'invalid'],
  ])('answers %s with an error reply, and the member stays', async (_, kind, data, code) => {
    const room = freshRoom()
    const alice = await join(room, 'alice')
    const id = send(alice, { type: 'publish', topic: `${kind}/${room}`, data })
    expect(await next(alice)).toMatchObject({ type: 'error', id, code })
    const ok = send(alice, {
      type: 'publish',
      topic: `rooms/${room}`,
      data: { text: 'still here' },
    })
    expect(await next(alice)).toEqual({ type: 'ack', id: ok })
  })

  it('refuses a message from a connection that is not in the room: no one outside the member list speaks', async () => {
    const room = freshRoom()
    const alice = await join(room, 'alice')
    const mallory = await open('mallory')
    const id = send(mallory, { type: 'publish', topic: `rooms/${room}`, data: { text: 'boo' } })
    expect(await next(mallory)).toMatchObject({ type: 'error', id, code: 'forbidden' })
    // Nor does a room come to be, with its history, from a publish alone.
    const elsewhere = freshRoom()
    const other = send(mallory, {
      type: 'publish',
      topic: `rooms/${elsewhere}`,
      data: { text: 'x' },
    })
    expect(await next(mallory)).toMatchObject({ type: 'error', id: other, code: 'forbidden' })
    const bob = await join(room, 'bob')
    await next(alice)
    send(bob, { type: 'publish', topic: `rooms/${room}`, data: { text: 'only me' } })
    // Bob's message is the first alice gets: mallory's never reached the room.
    expect(await next(alice)).toMatchObject(
      message(`rooms/${room}`, { name: 'bob', text: 'only me' }),
    )
  })

  it('answers a bad room name with an error reply that says what a room name is', async () => {
    const alice = await open('alice')
    const id = send(alice, { type: 'subscribe', topic: 'rooms/no spaces' })
    expect(await next(alice)).toMatchObject({
      type: 'error',
      id,
      code: 'invalid',
      message: 'The room name must be 1 to 32 letters, digits, - or _',
    })
  })

  it('closes a connection that sends text that is not JSON with 1007, and the others keep chatting', async () => {
    const room = freshRoom()
    const alice = await join(room, 'alice')
    const mallory = await join(room, 'mallory')
    await next(alice)
    mallory.send('{not json')
    expect(await mallory.closed).toMatchObject({ code: 1007, wasClean: true })
    expect(await next(alice)).toEqual(presence(room, [], ['mallory']))
    expect(alice.terminated).toBe(false)
  })

  it('closes a binary message with 1003', async () => {
    const peer = await open('eve')
    peer.send(new Uint8Array([1, 2, 3]))
    expect(await peer.closed).toMatchObject({ code: 1003 })
  })

  it('closes a message over the size limit with 1009', async () => {
    vi.spyOn(console, 'warn').mockImplementation(() => {})
    const peer = await open('eve')
    peer.send('x'.repeat(MAX_MESSAGE_BYTES + 1))
    expect(await peer.closed).toMatchObject({ code: 1009 })
  })

  it('closes an oversized name with 1008 before it joins anything', async () => {
    const peer = await open('x'.repeat(MAX_NAME_LENGTH + 1))
    expect(await peer.closed).toEqual({
      code: 1008,
      reason: `The name is too long: at most ${MAX_NAME_LENGTH} characters`,
      wasClean: true,
    })
  })

  it('counts characters, not UTF-16 units, in a name', async () => {
    const room = freshRoom()
    const alice = await join(room, 'alice')
    await join(room, '😀'.repeat(MAX_NAME_LENGTH))
    expect(await next(alice)).toEqual(presence(room, ['😀'.repeat(MAX_NAME_LENGTH)]))
  })

  it.each([
    ['missing', '/ws'],
    ['empty', '/ws?name='],
    ['only spaces', '/ws?name=%20%20'],
  ])('closes a %s name with 1008', async (_, path) => {
    const peer = await connect(app, path, { protocols: [CHANNEL_PROTOCOL] })
    expect(await peer.closed).toEqual({
      code: 1008,
      reason: 'A name is required: connect to /ws?name=<your name>',
      wasClean: true,
    })
  })

  it('serves the page at / and its script at /chat.js', async () => {
    const res = await app.request('/')
    expect(res.headers.get('content-type')).toMatch(/^text\/html/)
    expect(await res.text()).toContain('<script type="module" src="/chat.js"></script>')
    const script = await app.request('/chat.js')
    expect(script.headers.get('content-type')).toMatch(/^text\/javascript/)
  })
})

describe('a hub that hibernates (a Durable Object on Workers)', () => {
  it('keeps its members, their names and their rooms through an eviction before every event', async () => {
    const object = hibernatable(() => chat, {
      route: '/ws',
      evictEveryEvent: true,
      upgrade: { subprotocols: [CHANNEL_PROTOCOL] },
    })
    const enter = async (name: string) => {
      const peer = await object.connect({
        path: `/ws?name=${name}`,
        protocols: [CHANNEL_PROTOCOL],
      })
      peers.push(peer)
      send(peer, { type: 'subscribe', topic: 'rooms/lobby' })
      await next(peer)
      await next(peer)
      return peer
    }
    const alice = await enter('alice')
    const bob = await enter('bob')
    expect(await next(alice)).toEqual({ ...presence('lobby', ['bob']), topic: 'rooms/lobby' })
    send(bob, { type: 'publish', topic: 'rooms/lobby', data: { text: 'still there?' } })
    expect(await next(alice)).toEqual(message('rooms/lobby', { name: 'bob', text: 'still there?' }))
    bob.close(1000)
    expect(await next(alice)).toEqual(presence('lobby', [], ['bob']))
    // One eviction before each of bob's frames and before his close.
    expect(object.evictions).toBeGreaterThanOrEqual(3)
  })
})
