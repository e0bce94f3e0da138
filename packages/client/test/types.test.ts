/**
 * The client's types from a server's definition, checked by `tsc` (pnpm typecheck) and run as a
 * test: a publish takes what the topic's schema accepts (its input), a subscriber gets its output.
 * @module
 */
import { Channels } from '@handshake/core/channels'
import { expectTypeOf, it } from 'vitest'
import { z } from 'zod'
import {
  type Client,
  createClient,
  type MessageOf,
  type PresenceOf,
  type PublishOf,
} from '../src/index.js'

const chat = new Channels()
  .topic('rooms/:room', {
    message: z.object({ text: z.string(), from: z.string().default('anon') }),
  })
  .topic('rooms/:room/presence', {
    message: z.unknown(),
    presence: ({ params }) => ({ room: params.room, n: 1 }),
  })
  .request(
    'add',
    z.object({ a: z.number(), b: z.number().default(0) }),
    ({ input }) => input.a + input.b,
  )

it("types a publish with the topic schema's input and a message with its output", () => {
  expectTypeOf<PublishOf<typeof chat, 'rooms/a'>>().toEqualTypeOf<{
    text: string
    from?: string | undefined
  }>()
  expectTypeOf<MessageOf<typeof chat, 'rooms/a'>>().toEqualTypeOf<{ text: string; from: string }>()
  const check = (client: Client<typeof chat>) => {
    client.publish('rooms/a', { text: 'hi' })
    // @ts-expect-error: not the topic's message
    client.publish('rooms/a', { body: 'hi' })
    client.subscribe('rooms/a', {
      message: (data) => expectTypeOf(data.from).toEqualTypeOf<string>(),
    })
    return client.request('add', { a: 1 })
  }
  expectTypeOf<ReturnType<typeof check>>().toEqualTypeOf<Promise<number>>()
  void createClient
})

it("types a topic's members with what its presence hook answers", () => {
  expectTypeOf<PresenceOf<typeof chat, 'rooms/a/presence'>>().toEqualTypeOf<{
    room: string
    n: number
  }>()
  expectTypeOf<PresenceOf<typeof chat, 'rooms/a'>>().toEqualTypeOf<never>()
  const check = (client: Client<typeof chat>) => {
    const sub = client.subscribe('rooms/a/presence', {
      message() {},
      presence: (members, diff) => {
        expectTypeOf(members).toEqualTypeOf<ReadonlyMap<string, { room: string; n: number }>>()
        expectTypeOf(diff.joins[0]?.meta).toEqualTypeOf<{ room: string; n: number } | undefined>()
      },
    })
    expectTypeOf(sub.self).toEqualTypeOf<string | undefined>()
    return sub.members
  }
  expectTypeOf<ReturnType<typeof check>>().toEqualTypeOf<
    ReadonlyMap<string, { room: string; n: number }>
  >()
})
