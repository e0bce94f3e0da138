/**
 * A connection's bound on topic names holds for what it publishes too, not only for what it
 * subscribes to: a client that names rooms would otherwise hand the backplane (and its per-topic
 * counts) names of any length.
 */
import { describe, expect, it } from 'vitest'
import { type Backplane, type BackplaneSink, createHub } from '../src/adapter.js'
import type { Conn, MessageData } from '../src/index.js'
import { connect } from '../src/testing.js'

/** A backplane that records the topics published on it. */
class Recording implements Backplane {
  readonly published: string[] = []
  start(_sink: BackplaneSink): void {}
  async subscribe(_topic: string): Promise<void> {}
  async unsubscribe(_topic: string): Promise<void> {}
  publish(topic: string, _data: MessageData): void {
    this.published.push(topic)
  }
  async close(): Promise<void> {}
}

/** Publishes each name from a connection; resolves with what each publish threw. */
async function publishAll(names: string[], maxTopicLength?: number) {
  const hub = createHub()
  const topics = hub.topics
  const backplane = new Recording()
  await topics.useBackplane(backplane)
  const outcomes: unknown[] = []
  const peer = await connect(
    {
      serve(conn: Conn) {
        for (const name of names) {
          try {
            conn.publish(name, 'm')
            outcomes.push('ok')
          } catch (err) {
            outcomes.push(err)
          }
        }
      },
    },
    '/',
    { hub, upgrade: maxTopicLength === undefined ? {} : { maxTopicLength } },
  )
  await peer.closed
  return { outcomes, published: backplane.published }
}

describe('conn.publish applies the connection’s maxTopicLength', () => {
  it('throws a RangeError that names the option for a name over 256 UTF-8 bytes, and publishes nothing', async () => {
    const longest = 'x'.repeat(256)
    const { outcomes, published } = await publishAll([
      longest,
      'x'.repeat(257),
      'é'.repeat(129),
      'x'.repeat(1_000_000),
    ])
    expect(outcomes[0]).toBe('ok')
    for (const refused of outcomes.slice(1)) {
      expect(refused).toBeInstanceOf(RangeError)
      expect(String(refused)).toMatch(/maxTopicLength/)
    }
    expect(published).toEqual([longest])
  })

  it('takes a longer name when maxTopicLength is raised', async () => {
    const { outcomes, published } = await publishAll(['x'.repeat(1000)], 1000)
    expect(outcomes).toEqual(['ok'])
    expect(published).toHaveLength(1)
  })
})
