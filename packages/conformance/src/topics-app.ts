/**
 * The conformance app's topic routes: rooms served by a `serve` controller and by an event
 * controller, publishes from HTTP routes, and bursts that find slow subscribers. They use the
 * hub of the server that serves them (`getHub(c)`, `conn.hub`), so each scenario picks a topic
 * of its own.
 * @module
 */
import {
  type Conn,
  type Controller,
  type EventController,
  getHub,
  type Logger,
  type UpgradeOptions,
  upgrade,
} from '@handshake/core'
import type { Context, Hono } from 'hono'
import type { CloseInfo, ServerReport } from './app.js'

/** The `maxPublishBuffer` of `/topic-slow` and `/topic-drop`, in bytes. */
export const SMALL_PUBLISH_BUFFER = 64 * 1024
/** The size of each message of `POST /burst`, in bytes; it starts with its sequence number. */
export const BURST_MESSAGE_BYTES = 16 * 1024
/** The most messages one `POST /burst` publishes: 16 MiB, far over any kernel's buffers. */
export const MAX_BURST_MESSAGES = 1024

/** What the topic routes need from the app: its record, its logger and its error rendering. */
export interface TopicRouteTools {
  report(c: Context, route: string): ServerReport
  logger(report: ServerReport): Logger
  describe(err: unknown): CloseInfo
}

/** The connections the bursts watch, by report id. */
const live = new Map<string, Conn>()

function track(c: Context, conn: Conn, report: ServerReport): void {
  live.set(report.id, conn)
  // Read when the report is sent, so it shows the count of that moment.
  Object.defineProperty(report, 'droppedMessages', {
    get: () => conn.droppedMessages,
    enumerable: true,
    configurable: true,
  })
  conn.signal.addEventListener('abort', () => {
    if (live.get(report.id) === conn) live.delete(report.id)
  })
  report.topics = [c.req.param('topic') as string]
}

/**
 * A room: subscribes to `:topic` (unless `?subscribe=0`), says `joined` once the subscription
 * counts, then publishes every message it reads to the room.
 */
function room(tools: TopicRouteTools, report: ServerReport): Controller {
  return {
    async serve(conn, c) {
      report.served = true
      const topic = c.req.param('topic') as string
      track(c, conn, report)
      if (c.req.query('subscribe') !== '0') await conn.subscribe(topic)
      await conn.send('joined')
      try {
        for (;;) {
          const message = await conn.read()
          report.messagesRead++
          conn.publish(topic, message.data)
        }
      } catch (err) {
        report.readError = tools.describe(err)
      } finally {
        report.settled = true
      }
    },
  }
}

/**
 * The same room as an event controller: it joins in `open`, publishes each message in
 * `message`, and tells the room `left:<id>` from `close`.
 */
function eventRoom(tools: TopicRouteTools, report: ServerReport): EventController {
  let topic = ''
  return {
    async open(conn, c) {
      report.served = true
      topic = c.req.param('topic') as string
      track(c, conn, report)
      await conn.subscribe(topic)
      await conn.send('joined')
    },
    message(conn, message) {
      report.messagesRead++
      conn.publish(topic, message.data)
    },
    close(conn, error) {
      report.readError = tools.describe(error)
      report.settled = true
      conn.publish(topic, `left:${report.id}`)
    },
  }
}

/**
 * Joins `:topic`, then for each message `n`, interleaves `n` sends to itself with `n` publishes
 * to the topic, none awaited: the peer must get them in call order.
 */
function mixer(tools: TopicRouteTools, report: ServerReport): Controller {
  return {
    async serve(conn, c) {
      report.served = true
      const topic = c.req.param('topic') as string
      await conn.subscribe(topic)
      await conn.send('joined')
      try {
        for await (const message of conn) {
          for (let i = 0; i < Number(message.data); i++) {
            void conn.send(`send ${i}`)
            conn.hub.topics.publish(topic, `publish ${i}`)
          }
        }
      } catch (err) {
        report.readError = tools.describe(err)
      }
    },
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** The name of what a call threw or rejected with, or `'ok'`. */
async function outcome(call: () => unknown): Promise<string> {
  try {
    await call()
    return 'ok'
  } catch (err) {
    return err instanceof Error ? err.name : typeof err
  }
}

/**
 * Issue 18 #9 and #10, with the default bounds: subscribes to 129 topics of its own, then to a
 * name of 257 bytes and to one with a lone surrogate, publishes to that one, and answers with
 * what each call did and how many topics it holds; then ends.
 */
const limits = (): Controller => ({
  async serve(conn, c) {
    const topic = c.req.param('topic') as string
    const many: string[] = []
    for (let i = 0; i < 129; i++) many.push(await outcome(() => conn.subscribe(`${topic}-${i}`)))
    const answer = {
      held: conn.topics.size,
      firstRefused: many.indexOf('RangeError'),
      tooLong: await outcome(() => conn.subscribe('x'.repeat(257))),
      loneSurrogate: await outcome(() => conn.subscribe(`${topic}\uD800`)),
      publishLoneSurrogate: await outcome(() => conn.publish(`${topic}\uD800`, 'm')),
    }
    await conn.send(JSON.stringify(answer))
  },
})

/** A burst message: its sequence number, big-endian, then a pattern. */
function burstMessage(sequence: number): Uint8Array {
  const bytes = new Uint8Array(BURST_MESSAGE_BYTES).fill(sequence & 0xff)
  new DataView(bytes.buffer).setUint32(0, sequence)
  return bytes
}

/** Mounts the topic routes on the conformance app. */
export function mountTopicRoutes(app: Hono, tools: TopicRouteTools): void {
  const controllers = { serve: room, events: eventRoom, mix: mixer, limits }
  const mountRoom = (
    path: string,
    kind: keyof typeof controllers,
    options: UpgradeOptions = {},
  ) => {
    app.get(path, (c, next) => {
      const report = tools.report(c, path.split('/')[1] as string)
      const controller = controllers[kind](tools, report)
      return upgrade(controller, { logger: tools.logger(report), ...options })(c, next)
    })
  }
  mountRoom('/topic/:topic', 'serve')
  mountRoom('/topic-events/:topic', 'events')
  mountRoom('/topic-mix/:topic', 'mix')
  mountRoom('/topic-limits/:topic', 'limits')
  mountRoom('/topic-slow/:topic', 'serve', { maxPublishBuffer: SMALL_PUBLISH_BUFFER })
  mountRoom('/topic-drop/:topic', 'serve', {
    maxPublishBuffer: SMALL_PUBLISH_BUFFER,
    slowSubscriber: 'drop',
  })

  // A publish from outside any connection: text for a text/* body, the bytes otherwise.
  app.post('/publish/:topic', async (c) => {
    const topic = c.req.param('topic')
    const text = c.req.header('content-type')?.startsWith('text/')
    const { topics } = getHub(c)
    topics.publish(topic, text ? await c.req.text() : new Uint8Array(await c.req.arrayBuffer()))
    return c.json({ subscribers: topics.subscribers(topic) })
  })
  app.get('/subscribers/:topic', (c) =>
    c.json({ subscribers: getHub(c).topics.subscribers(c.req.param('topic')) }),
  )

  // Publishes numbered binary messages, yielding between batches as a busy server would, until
  // `?count=` is reached or the connection `?watch=` has stopped being open or has dropped
  // messages. It never waits on a subscriber: the time it took shows that.
  app.post('/burst/:topic', async (c) => {
    const topic = c.req.param('topic')
    const count = Math.min(Number(c.req.query('count') ?? MAX_BURST_MESSAGES), MAX_BURST_MESSAGES)
    const watched = live.get(c.req.query('watch') ?? '')
    const { topics } = getHub(c)
    const started = Date.now()
    let published = 0
    while (published < count) {
      topics.publish(topic, burstMessage(published))
      published++
      if (watched && (watched.state !== 'open' || watched.droppedMessages > 0)) break
      if (published % 8 === 0) await sleep(0)
    }
    return c.json({ published, ms: Date.now() - started })
  })
}
