import { CloseError } from '@handshake/core'
import { connect, hibernatable, hub, type TestPeer } from '@handshake/core/testing'
import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  app,
  ChatController,
  MAX_BUFFERED_BYTES,
  MAX_MESSAGE_BYTES,
  MAX_NAME_LENGTH,
  MAX_TEXT_LENGTH,
  rollCallAfterOutage,
  roomTopic,
  type ServerEvent,
} from '../src/app.ts'

// The rooms are topics of the kit's hub, shared by the tests (as a server's are).
const { topics } = hub
rollCallAfterOutage(topics)

const peers: TestPeer[] = []
let rooms = 0

/** A room no other test uses: the rooms are topics of the kit's hub, shared by the tests. */
function freshRoom(): string {
  rooms += 1
  return `room-${rooms}`
}

async function join(room: string, name: string): Promise<TestPeer> {
  const peer = await connect(app, `/ws/${room}?name=${encodeURIComponent(name)}`)
  peers.push(peer)
  return peer
}

async function next(peer: TestPeer): Promise<ServerEvent> {
  const msg = await peer.read()
  if (msg.type !== 'text') throw new Error('expected a text message')
  return JSON.parse(msg.data) as ServerEvent
}

afterEach(async () => {
  const leaving = peers.splice(0)
  for (const peer of leaving) peer.close(1000)
  await Promise.all(leaving.map((peer) => peer.closed))
  vi.restoreAllMocks()
})

describe('chat rooms', () => {
  it('tells everyone in the room who joins, who is there, then who leaves', async () => {
    const room = freshRoom()
    const alice = await join(room, 'alice')
    expect(await next(alice)).toEqual({ type: 'join', name: 'alice' })
    const bob = await join(room, 'bob')
    const joined = { type: 'join', name: 'bob' }
    expect(await next(alice)).toEqual(joined)
    expect(await next(bob)).toEqual(joined)
    // Alice's page answers the join, so that bob learns she is there.
    alice.send(JSON.stringify({ here: true }))
    expect(await next(bob)).toEqual({ type: 'here', name: 'alice' })
    expect(await next(alice)).toEqual({ type: 'here', name: 'alice' })

    bob.close(1001, 'tab closed')
    expect(await bob.closed).toMatchObject({ code: 1001, wasClean: true })
    expect(await next(alice)).toEqual({ type: 'leave', name: 'bob' })
    expect(topics.subscribers(roomTopic(room))).toBe(1)
  })

  it('asks every room for a roll call when the backplane is back after an outage', async () => {
    const room = freshRoom()
    const alice = await join(room, 'alice')
    await next(alice)
    topics.dispatchEvent(new Event('restore'))
    expect(await next(alice)).toEqual({ type: 'rollcall' })
  })

  it('broadcasts a message to the whole room, sender included, and no other room', async () => {
    const room = freshRoom()
    const alice = await join(room, 'alice')
    const bob = await join(room, 'bob')
    const carol = await join(freshRoom(), 'carol')
    await next(alice)
    await next(alice)
    await next(bob)
    await next(carol)

    alice.send(JSON.stringify({ text: '  hello, bob  ' }))
    const said = { type: 'message', name: 'alice', text: 'hello, bob' }
    expect(await next(alice)).toEqual(said)
    expect(await next(bob)).toEqual(said)

    carol.send(JSON.stringify({ text: 'anyone?' }))
    expect(await next(carol)).toEqual({ type: 'message', name: 'carol', text: 'anyone?' })
    bob.send(JSON.stringify({ text: 'hi alice' }))
    // Bob's message is the next thing alice sees: carol's never reached this room.
    expect(await next(alice)).toEqual({ type: 'message', name: 'bob', text: 'hi alice' })
  })

  it('drops a member too slow to read with 1008, and the room goes on', async () => {
    const room = freshRoom()
    // The slow member's loop ends with the 1008 CloseError: onError reports it in one line.
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    const alice = await join(room, 'alice')
    const slow = await join(room, 'slow')
    await next(alice)
    await next(alice)
    slow.stopReading()

    const text = 'x'.repeat(MAX_TEXT_LENGTH)
    // Enough to pile up more than MAX_BUFFERED_BYTES for the member that does not read.
    const count = Math.ceil(MAX_BUFFERED_BYTES / text.length) + 10
    for (let i = 0; i < count; i++) alice.send(JSON.stringify({ text }))
    const seen: ServerEvent[] = []
    for (let i = 0; i <= count; i++) seen.push(await next(alice))
    expect(seen.filter((event) => event.type === 'message')).toHaveLength(count)
    expect(seen).toContainEqual({ type: 'leave', name: 'slow' })

    slow.startReading()
    expect(await slow.closed).toMatchObject({
      code: 1008,
      reason: `Subscriber too slow: over ${MAX_BUFFERED_BYTES} bytes of published messages unsent`,
    })
    expect(warn).toHaveBeenCalledWith(expect.stringMatching(/1008: Subscriber too slow/))
  })

  it('trims the name from the query parameter', async () => {
    const room = freshRoom()
    const peer = await join(room, '  dora  ')
    expect(await next(peer)).toEqual({ type: 'join', name: 'dora' })
  })
})

describe('input validation', () => {
  it('closes a connection that sends bad JSON with 1007, and the others keep chatting', async () => {
    const room = freshRoom()
    const alice = await join(room, 'alice')
    const mallory = await join(room, 'mallory')
    await next(alice)
    await next(alice)

    mallory.send('{not json')
    expect(await mallory.closed).toEqual({
      code: 1007,
      reason: 'Expected JSON {"text": "..."} with 1 to 1000 characters',
      wasClean: true,
    })
    expect(await next(alice)).toEqual({ type: 'leave', name: 'mallory' })
    alice.send(JSON.stringify({ text: 'still here' }))
    expect(await next(alice)).toEqual({ type: 'message', name: 'alice', text: 'still here' })
    expect(alice.terminated).toBe(false)
  })

  it.each([
    ['a JSON value of the wrong shape', JSON.stringify({ message: 'hi' })],
    ['a text that is not a string', JSON.stringify({ text: 42 })],
    ['an empty text', JSON.stringify({ text: '   ' })],
    ['a text over 1000 characters', JSON.stringify({ text: 'é'.repeat(1001) })],
    ['JSON null', 'null'],
    ['a roll-call answer that is not true', JSON.stringify({ here: 'yes' })],
  ])('closes with 1007 on %s', async (_, data) => {
    const room = freshRoom()
    const peer = await join(room, 'eve')
    peer.send(data)
    expect(await peer.closed).toMatchObject({ code: 1007 })
  })

  it('closes a binary message with 1003', async () => {
    const room = freshRoom()
    const peer = await join(room, 'eve')
    peer.send(new Uint8Array([1, 2, 3]))
    expect(await peer.closed).toEqual({
      code: 1003,
      reason: 'Binary messages are not supported',
      wasClean: true,
    })
  })

  it('closes a message over the size limit with 1009', async () => {
    const room = freshRoom()
    vi.spyOn(console, 'warn').mockImplementation(() => {})
    const peer = await join(room, 'eve')
    peer.send('x'.repeat(MAX_MESSAGE_BYTES + 1))
    expect(await peer.closed).toMatchObject({ code: 1009 })
  })

  it('closes an oversized name with 1008 before it joins, and the room never hears of it', async () => {
    const room = freshRoom()
    const alice = await join(room, 'alice')
    await next(alice)
    const long = await join(room, 'x'.repeat(MAX_NAME_LENGTH + 1))
    expect(await long.closed).toEqual({
      code: 1008,
      reason: `The name is too long: at most ${MAX_NAME_LENGTH} characters`,
      wasClean: true,
    })
    await expect(long.read()).rejects.toBeInstanceOf(CloseError)

    alice.send(JSON.stringify({ text: 'quiet in here' }))
    expect(await next(alice)).toEqual({ type: 'message', name: 'alice', text: 'quiet in here' })
  })

  it('counts characters, not UTF-16 units, in a name', async () => {
    const room = freshRoom()
    const peer = await join(room, '😀'.repeat(MAX_NAME_LENGTH))
    expect(await next(peer)).toMatchObject({ type: 'join' })
  })

  it.each([
    ['missing', '/ws/lobby'],
    ['empty', '/ws/lobby?name='],
    ['only spaces', '/ws/lobby?name=%20%20'],
  ])('closes a %s name with 1008', async (_, path) => {
    const peer = await connect(app, path)
    expect(await peer.closed).toEqual({
      code: 1008,
      reason: 'A name is required: connect to /ws/<room>?name=<your name>',
      wasClean: true,
    })
  })

  it('closes a bad room name with 1008', async () => {
    const peer = await connect(app, `/ws/${encodeURIComponent('no spaces')}?name=eve`)
    expect(await peer.closed).toMatchObject({ code: 1008, reason: expect.stringMatching(/room/) })
  })

  it('serves the page at /', async () => {
    const res = await app.request('/')
    expect(res.headers.get('content-type')).toMatch(/^text\/html/)
    expect(await res.text()).toContain('<title>Handshake chat</title>')
  })
})

describe('a room that hibernates (a Durable Object on Workers)', () => {
  it('keeps its members, their names and the room through an eviction before every event', async () => {
    const room = hibernatable(() => new ChatController(), {
      route: '/ws/:room',
      evictEveryEvent: true,
    })
    const alice = await room.connect({ path: '/ws/lobby?name=alice' })
    peers.push(alice)
    expect(await next(alice)).toEqual({ type: 'join', name: 'alice' })
    const bob = await room.connect({ path: '/ws/lobby?name=bob' })
    peers.push(bob)
    expect(await next(alice)).toEqual({ type: 'join', name: 'bob' })
    expect(await next(bob)).toEqual({ type: 'join', name: 'bob' })

    bob.send(JSON.stringify({ text: 'still there?' }))
    const said = { type: 'message', name: 'bob', text: 'still there?' }
    expect(await next(alice)).toEqual(said)
    expect(await next(bob)).toEqual(said)
    bob.close(1000)
    expect(await next(alice)).toEqual({ type: 'leave', name: 'bob' })
    // One eviction before the message, one before the close.
    expect(room.evictions).toBe(2)
  })
})
