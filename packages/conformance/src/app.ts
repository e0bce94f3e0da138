/**
 * The conformance app: one table of scenarios, each written as a `serve` controller and as an
 * event controller (`open`, `message`, `close`) that do the same thing. The app mounts every
 * scenario twice: its `serve` form at its path (`/echo`), its event form under
 * {@link EVENTS_PREFIX} (`/events/echo`), so the suite runs its scenarios unchanged against either
 * kind. Where `serve` does something and then returns, `open` does it and then closes normally.
 * It imports only `hono` and `@handshake/core`, so Node, Bun, Deno and workerd all run this same
 * module; each runtime's test entry imports it plus its adapter and serves it.
 *
 * Routes read an `id` query parameter and record what the server saw under it (the error a
 * pending read rejected with, `onError` calls, logged errors, how long `close()` took...).
 * `GET /report/:id` returns that record as JSON. The records live in module scope, which is
 * enough because each runtime serves the app from one process or isolate.
 * @module
 */
import {
  CloseError,
  type Conn,
  type Controller,
  type ControllerWithHooks,
  type ErrorHandler,
  type EventController,
  type EventControllerWithHooks,
  type HeaderUpgrader,
  type Logger,
  type Message,
  type OriginChecker,
  type Position,
  type Topics,
  type UpgradeErrorHandler,
  type UpgradeOptions,
  upgrade,
} from '@handshake/core'
import { type Context, Hono } from 'hono'
// .ts specifiers: Deno runs this module from source, and resolves no .js to a .ts file.
import { mountTopicRoutes } from './topics-app.ts'

// --- what the suite and the app agree on ---

/** Where the event forms are mounted: `/events/echo` is `/echo` served by an event controller. */
export const EVENTS_PREFIX = '/events'

/** The close-handshake timeout of `/close-timeout`, in milliseconds. */
export const SHORT_CLOSE_TIMEOUT_MS = 400
/** The `maxMessageSize` of `/max-message`, in bytes. */
export const SMALL_MAX_MESSAGE_SIZE = 1024
/** The `maxInboundBuffer` of `/slow-reader`, in bytes. */
export const SMALL_INBOUND_BUFFER = 64 * 1024
/** How long `/slow-reader` waits before it reads anything, in milliseconds. */
export const SLOW_READER_DELAY_MS = 1500
/** The server's subprotocols on `/subprotocols`, most preferred first. */
export const SERVER_SUBPROTOCOLS: readonly string[] = ['v2.chat', 'v1.chat']
/** The only `Origin` that `/custom-origin` accepts. */
export const ALLOWED_ORIGIN = 'https://allowed.example'
/** The header a middleware adds to the response of `/middleware-headers`, after the handler. */
export const MIDDLEWARE_HEADER = { name: 'X-Conformance-Middleware', value: 'after-next' } as const

/** The close code and reason `/close-at-once` closes with before its first `await`. */
export const CLOSE_AT_ONCE = { code: 4001, reason: 'not allowed' } as const
/** The close-handshake timeout of `/close-at-once`: its close must take far less. */
export const CLOSE_AT_ONCE_TIMEOUT_MS = 5000
/** The close-handshake timeout of `/close-paused`: its close must take far less. */
export const CLOSE_PAUSED_TIMEOUT_MS = 4000
/** How long each `message()` of `/events/overlap` takes, in milliseconds. */
export const OVERLAP_HANDLER_MS = 20

/** The topics that keep history on the conformance app's hubs (`/history`): a prefix. */
export const HISTORY_TOPIC_PREFIX = 'history-'
/** How much history each of them keeps. */
export const HISTORY_OPTIONS = { size: 100, ttl: 60_000 } as const

/** The header `/upgrade-headers` adds to its 101 response. */
export const UPGRADE_HEADER = { name: 'X-Conformance', value: 'upgrade-headers' } as const
/**
 * The message `/debug` throws: 1 + 40 × 4 UTF-8 bytes, so cutting it to 123 bytes must stop
 * on a character boundary (121 bytes), not in the middle of an emoji.
 */
export const DEBUG_ERROR_MESSAGE = `x${'😀'.repeat(40)}`
/** The message the throwing routes throw. */
export const THROWN_MESSAGE = 'conformance: serve failed on purpose'
/** The message `onError` throws on `/on-error-throws`. */
export const ON_ERROR_THROWN_MESSAGE = 'conformance: onError failed on purpose'

/** A {@link CloseError} as the report carries it. */
export interface CloseInfo {
  name: string
  code?: number
  reason?: string
  wasClean?: boolean
  message: string
}

/** What the server saw on one connection, as `GET /report/:id` returns it. */
export interface ServerReport {
  /** The id the client passed as `?id=`. */
  id: string
  /** The route that served it. */
  route: string
  /** True once `serve` started. */
  served: boolean
  /** True once `serve` returned or threw. */
  settled: boolean
  /** Messages `serve` read. */
  messagesRead: number
  /** The error the last read rejected with: a CloseError once the connection ended. */
  readError?: CloseInfo
  /** The errors `onError` was called with (their messages). */
  onErrorCalls: string[]
  /** Each call to the logger's `error`, its arguments rendered (errors with their stack). */
  logged: string[][]
  /** How long `conn.close()` took on the routes that close themselves, in milliseconds. */
  closeMs?: number
  /** The state `conn.state` reported after `close()` resolved. */
  stateAfterClose?: string
  /** On `/concurrent-close`: how many of the concurrent calls resolved, and over what time span. */
  concurrentCloses?: { resolved: number; rejected: number; spreadMs: number }
  /** The `RangeError` messages of invalid `close()` calls on `/bad-close`. */
  rangeErrors: string[]
  /** True once the request waits in a `?hold=` gate, or in `/late-open`'s `upgradeHeaders`. */
  held?: boolean
  /** On the topic routes: the topic the connection joined. */
  topics?: string[]
  /** On the topic routes: `conn.droppedMessages` when the report was read. */
  droppedMessages?: number
  /**
   * On the event controllers' routes: each handler call as it started and ended
   * (`open`, `message <data>`, `end <data>`, `close <code>`), to check that none overlap.
   */
  handlers?: string[]
  /** What `serve` saw of its connection and context (on `/inspect`). */
  saw?: {
    protocol: string
    state: string
    canPing: boolean
    closeHandshakeTimeout: number
    path: string
    probeHeader: string | null
    query: Record<string, string>
    /** What `c.req.raw` shows: still a whole Request, after the upgrade. */
    raw: { isRequest: boolean; method: string; path: string; cloneProbe: string | null }
  }
}

// --- the record ---

const MAX_REPORTS = 2000
const reports = new Map<string, ServerReport>()

/**
 * The report of a connection id, read in the server's own process: what `GET /report/:id`
 * answers, for when the server no longer listens (after its shutdown).
 */
export function findReport(id: string): ServerReport | undefined {
  return reports.get(id)
}

/** The report of the connection a request opens (by its `?id=`), made on first use. */
export function reportFor(c: Context, route: string): ServerReport {
  const id = c.req.query('id') ?? `anonymous-${route}`
  let report = reports.get(id)
  if (!report) {
    // A long run must not grow memory without bound: forget the oldest record.
    if (reports.size >= MAX_REPORTS) reports.delete(reports.keys().next().value as string)
    report = {
      id,
      route,
      served: false,
      settled: false,
      messagesRead: 0,
      onErrorCalls: [],
      logged: [],
      rangeErrors: [],
    }
    reports.set(id, report)
  }
  return report
}

/** An error as the report carries it. */
export function describeError(err: unknown): CloseInfo {
  if (err instanceof CloseError) {
    return {
      name: err.name,
      code: err.code,
      reason: err.reason,
      wasClean: err.wasClean,
      message: err.message,
    }
  }
  if (err instanceof Error) return { name: err.name, message: err.message }
  return { name: typeof err, message: String(err) }
}

function render(arg: unknown): string {
  if (arg instanceof Error) return `${arg.name}: ${arg.message}\n${arg.stack ?? ''}`
  return typeof arg === 'string' ? arg : (JSON.stringify(arg) ?? String(arg))
}

/** A logger that records into the report instead of printing, so tests stay quiet. */
export function recordingLogger(report: ServerReport): Logger {
  return { error: (...args: unknown[]) => report.logged.push(args.map(render)) }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

// --- history ---

const keepingHistory = new WeakSet<Topics>()

/**
 * Turns history on, once, on the hub of the first `/history` connection: the topics under
 * {@link HISTORY_TOPIC_PREFIX} keep {@link HISTORY_OPTIONS}, and a subscriber gets each delivery
 * as JSON (`{ type, topic, data, position }`, or a gap's `{ type, topic, position, reason }`).
 */
function keepHistory(topics: Topics): void {
  if (keepingHistory.has(topics)) return
  keepingHistory.add(topics)
  topics.useHistory({
    history: (topic) => (topic.startsWith(HISTORY_TOPIC_PREFIX) ? HISTORY_OPTIONS : undefined),
    frame: (d) => JSON.stringify(d.type === 'message' ? { ...d, data: String(d.data) } : d),
  })
}

/**
 * `/history?topic=&epoch=&offset=`: subscribes to `topic` from that position (none without
 * `epoch`), then sends `{ type: 'subscribed', position, recovered }`.
 */
const subscribeSince: Step = async (conn, c) => {
  keepHistory(conn.hub.topics)
  const epoch = c.req.query('epoch')
  const since: Position | undefined = epoch
    ? { epoch, offset: Number(c.req.query('offset')) }
    : undefined
  const subscription = await conn.subscribe(c.req.query('topic') ?? '', { since })
  await conn.send(JSON.stringify({ type: 'subscribed', ...subscription }))
}

// --- the table ---

/** The hooks a scenario's two forms share. */
type Hooks = Partial<ErrorHandler & HeaderUpgrader & OriginChecker & UpgradeErrorHandler>

/**
 * One scenario, in both controller forms, each made per connection so it records into that
 * connection's report. A scenario that only one kind has to prove has only that form.
 */
interface Scenario {
  /** Where the `serve` form is mounted; the event form is at {@link EVENTS_PREFIX} + `path`. */
  path: string
  options?: UpgradeOptions
  hooks?(report: ServerReport): Hooks
  serve?(report: ServerReport): Controller['serve']
  events?(report: ServerReport): EventController
}

/** What a scenario does first, on either form: in `serve` before it reads, or in `open`. */
type Step = (conn: Conn, c: Context, report: ServerReport) => void | Promise<void>

/** Reads until the connection ends, recording the count and the final error. */
async function drain(conn: Conn, report: ServerReport): Promise<void> {
  try {
    for (;;) {
      await conn.read()
      report.messagesRead++
    }
  } catch (err) {
    report.readError = describeError(err)
  }
}

/**
 * Both forms of a scenario that does `first`, then answers each message with `answer` until the
 * connection ends: `serve` reads in a loop and records the error its last read saw; the event
 * form answers from `message` (its mount records the end).
 */
function answering(
  answer: (conn: Conn, message: Message) => void | Promise<void>,
  first?: Step,
): Pick<Scenario, 'serve' | 'events'> {
  return {
    serve: (report) => async (conn, c) => {
      await first?.(conn, c, report)
      try {
        for (;;) {
          const message = await conn.read()
          report.messagesRead++
          await answer(conn, message)
        }
      } catch (err) {
        report.readError = describeError(err)
      }
    },
    events: (report) => ({
      open: first && ((conn, c) => first(conn, c, report)),
      message(conn, message) {
        report.messagesRead++
        return answer(conn, message)
      },
    }),
  }
}

/**
 * Both forms of a scenario that does `act`, then, with `'end'`, ends: `serve` returns (the
 * upgrader closes with 1000), `open` closes normally; with `'drain'`, reads and counts messages
 * until the connection ends. `act` runs synchronously from `serve` or `open`, so a synchronous
 * throw stays one, and a close it calls comes before their first `await`.
 */
function acting(act: Step, then: 'end' | 'drain'): Pick<Scenario, 'serve' | 'events'> {
  return {
    // Not async: see above.
    serve: (report) => (conn, c) =>
      Promise.resolve(act(conn, c, report)).then(() =>
        then === 'drain' ? drain(conn, report) : undefined,
      ),
    events: (report) => ({
      open: (conn, c) =>
        Promise.resolve(act(conn, c, report)).then(() =>
          then === 'end' ? conn.closeNormal() : undefined,
        ),
      message() {
        report.messagesRead++
      },
    }),
  }
}

const echoBack = (conn: Conn, message: Message) => conn.send(message.data)

/** Records `onError` calls; every throwing scenario has it, except the logger ones. */
const recordOnError = (report: ServerReport): Hooks => ({
  onError(_c, err) {
    report.onErrorCalls.push(err instanceof Error ? err.message : String(err))
  },
})

/** Calls `close()` and records how long it took and the state after it. */
async function timedClose(conn: Conn, report: ServerReport, code: number, reason: string) {
  const started = Date.now()
  await conn.close(code, reason)
  report.closeMs = Date.now() - started
  report.stateAfterClose = conn.state
}

/** The route as the table names it: which family serves it is the suite's business. */
const scenarioPath = (path: string) =>
  path.startsWith(`${EVENTS_PREFIX}/`) ? path.slice(EVENTS_PREFIX.length) : path

/** The report's record of handler calls, made on first use. */
function handlerLog(report: ServerReport): string[] {
  report.handlers ??= []
  return report.handlers
}

/** Every scenario, with its options. */
const scenarios: Scenario[] = [
  /**
   * Recovery from a position: subscribes from `?epoch=&offset=` (see {@link subscribeSince}),
   * then reads until the end; what it is published arrives as JSON with its position.
   */
  {
    path: '/history',
    serve: (report) => async (conn, c) => {
      await subscribeSince(conn, c, report)
      await drain(conn, report)
    },
    events: (report) => ({
      open: (conn, c) => subscribeSince(conn, c, report),
      message() {
        report.messagesRead++
      },
    }),
  },
  /** Echoes every message until the connection ends; records the error the last read saw. */
  { path: '/echo', ...answering(echoBack) },
  /** Echoes binary messages as a view into the middle of a larger buffer, text as is. */
  {
    path: '/echo-view',
    ...answering((conn, message) => {
      if (message.type === 'text') return conn.send(message.data)
      const padded = new Uint8Array(message.data.byteLength + 16).fill(0xee)
      padded.set(message.data, 7)
      return conn.send(padded.subarray(7, 7 + message.data.byteLength))
    }),
  },
  /** Answers each binary message with the shape of the view it arrived in. */
  {
    path: '/binary-shape',
    ...answering((conn, message) => {
      if (message.type !== 'binary') return
      const { byteLength, byteOffset, buffer } = message.data
      return conn.send(
        JSON.stringify({ byteLength, byteOffset, bufferByteLength: buffer.byteLength }),
      )
    }),
  },
  /** Sends a greeting, then ends: the upgrader closes with 1000. */
  { path: '/serve-returns', ...acting((conn) => conn.send('hello'), 'end') },
  /** Throws a normal close error: the upgrader closes normally and reports nothing. */
  {
    path: '/close-error',
    hooks: recordOnError,
    ...acting(async (conn) => {
      await conn.send('hello')
      throw new CloseError(1001, 'going away', true)
    }, 'end'),
  },
  /** Throws synchronously, with no `onError`: the logger gets it, then 1011. */
  {
    path: '/throws',
    ...acting(() => {
      throw new Error(THROWN_MESSAGE)
    }, 'end'),
  },
  /** Rejects after a tick, with no `onError`: the logger gets it, then 1011. */
  {
    path: '/rejects',
    ...acting(async (conn) => {
      await conn.send('hello')
      await sleep(10)
      throw new Error(THROWN_MESSAGE)
    }, 'end'),
  },
  /** Throws with `onError` present: `onError` gets it, the logger does not, then 1011. */
  {
    path: '/throws-handled',
    hooks: recordOnError,
    ...acting(async () => {
      throw new Error(THROWN_MESSAGE)
    }, 'end'),
  },
  /** Throws a long multibyte message under `debug`: it becomes the 1011 reason, cut to 123 bytes. */
  {
    path: '/debug',
    options: { debug: true },
    ...acting(async () => {
      throw new Error(DEBUG_ERROR_MESSAGE)
    }, 'end'),
  },
  /** Throws, and `onError` throws too: logged, and the close still happens. */
  {
    path: '/on-error-throws',
    hooks: (report) => ({
      onError(_c, err) {
        report.onErrorCalls.push(err instanceof Error ? err.message : String(err))
        throw new Error(ON_ERROR_THROWN_MESSAGE)
      },
    }),
    ...acting(async () => {
      throw new Error(THROWN_MESSAGE)
    }, 'end'),
  },
  /** Adds a header to the 101 response, then echoes. */
  {
    path: '/upgrade-headers',
    hooks: () => ({ upgradeHeaders: () => ({ [UPGRADE_HEADER.name]: UPGRADE_HEADER.value }) }),
    ...answering(echoBack),
  },
  /** Echoes; a middleware adds {@link MIDDLEWARE_HEADER} after the handler. */
  { path: '/middleware-headers', ...answering(echoBack) },
  /** Sends the chosen subprotocol (`''` when none) as its first message, then echoes. */
  {
    path: '/subprotocols',
    options: { subprotocols: SERVER_SUBPROTOCOLS },
    ...answering(echoBack, (conn) => conn.send(`protocol:${conn.protocol}`)),
  },
  /** Accepts only {@link ALLOWED_ORIGIN}, whatever the Host; echoes. */
  {
    path: '/custom-origin',
    hooks: () => ({ checkOrigin: (c) => c.req.header('origin') === ALLOWED_ORIGIN }),
    ...answering(echoBack),
  },
  /** Answers failed upgrades itself, as plain text with its own header. */
  {
    path: '/custom-upgrade-error',
    hooks: () => ({
      onUpgradeError: (_c, status, reason) =>
        new Response(`custom ${status}: ${reason.message}`, {
          status,
          headers: { 'Content-Type': 'text/plain', 'X-Custom-Error': 'yes' },
        }),
    }),
    ...answering(echoBack),
  },
  /**
   * Sends `closing`, then closes with 4000 and times how long `close()` takes: about the short
   * timeout when the peer never answers, less when it does.
   */
  {
    path: '/close-timeout',
    options: { closeHandshakeTimeout: SHORT_CLOSE_TIMEOUT_MS },
    ...acting(async (conn, _c, report) => {
      await conn.send('closing')
      await timedClose(conn, report, 4000, 'server is done')
    }, 'drain'),
  },
  /** Calls `close()` three times at once: one close frame (4001), and all three resolve together. */
  {
    path: '/concurrent-close',
    ...acting(async (conn, _c, report) => {
      await conn.send('closing')
      const settledAt: number[] = []
      let rejected = 0
      const calls = [conn.close(4001, 'first'), conn.close(4002, 'second'), conn.close()].map(
        (call) =>
          call.then(
            () => settledAt.push(Date.now()),
            () => rejected++,
          ),
      )
      await Promise.all(calls)
      report.concurrentCloses = {
        resolved: settledAt.length,
        rejected,
        spreadMs: settledAt.length ? Math.max(...settledAt) - Math.min(...settledAt) : 0,
      }
      report.stateAfterClose = conn.state
    }, 'drain'),
  },
  /** Tries invalid closes (each a RangeError, nothing sent), then ends: 1000 is the only frame. */
  {
    path: '/bad-close',
    ...acting(async (conn, _c, report) => {
      const attempts: [number, string][] = [
        [1005, ''],
        [1006, ''],
        [999, ''],
        [5000, ''],
        [1000, 'é'.repeat(62)],
      ]
      for (const [code, reason] of attempts) {
        try {
          await conn.close(code, reason)
        } catch (err) {
          if (err instanceof RangeError) report.rangeErrors.push(err.message)
        }
      }
      report.stateAfterClose = conn.state
      await conn.send('still open')
    }, 'end'),
  },
  {
    path: '/max-message',
    options: { maxMessageSize: SMALL_MAX_MESSAGE_SIZE },
    ...answering(echoBack),
  },
  /**
   * Waits {@link SLOW_READER_DELAY_MS} before it reads anything (in `open`, messages wait behind
   * it), then counts messages until `end` and answers `count:N`.
   */
  {
    path: '/slow-reader',
    // The bound must hold one whole message, or the upgrader refuses the options.
    options: { maxInboundBuffer: SMALL_INBOUND_BUFFER, maxMessageSize: SMALL_INBOUND_BUFFER / 2 },
    serve: (report) => async (conn) => {
      await sleep(SLOW_READER_DELAY_MS)
      try {
        for (;;) {
          const message = await conn.read()
          if (message.type === 'text' && message.data === 'end') break
          report.messagesRead++
        }
      } catch (err) {
        report.readError = describeError(err)
        return
      }
      await conn.send(`count:${report.messagesRead}`)
      await drain(conn, report)
    },
    events: (report) => ({
      open: () => sleep(SLOW_READER_DELAY_MS),
      message(conn, message) {
        if (message.type === 'text' && message.data === 'end') {
          return conn.send(`count:${report.messagesRead}`)
        }
        report.messagesRead++
      },
    }),
  },
  /** Pings where the runtime can and says what happened: `pong`, or `cannot-ping:<error>`. */
  {
    path: '/ping',
    ...answering(echoBack, async (conn) => {
      if (conn.canPing) {
        await conn.ping()
        await conn.send('pong')
        return
      }
      const error = await conn.ping().then(
        () => 'resolved',
        (err: unknown) => (err instanceof Error ? err.name : 'unknown'),
      )
      await conn.send(`cannot-ping:${error}`)
    }),
  },
  /** Sends what it saw of its connection and context, as JSON, and records it; then echoes. */
  {
    path: '/inspect',
    ...answering(echoBack, (conn, c, report) => {
      report.saw = {
        protocol: conn.protocol,
        state: conn.state,
        canPing: conn.canPing,
        closeHandshakeTimeout: conn.getCloseHandshakeTimeout(),
        path: scenarioPath(c.req.path),
        probeHeader: c.req.header('x-probe') ?? null,
        query: c.req.query(),
        // The raw request stays a whole Request, whatever the adapter keeps of it after the upgrade.
        raw: {
          isRequest: c.req.raw instanceof Request,
          method: c.req.raw.method,
          path: scenarioPath(new URL(c.req.raw.url).pathname),
          cloneProbe: c.req.raw.clone().headers.get('x-probe'),
        },
      }
      return conn.send(JSON.stringify(report.saw))
    }),
  },
  /**
   * Closes with {@link CLOSE_AT_ONCE} before its first `await` (refusing a client, say), and
   * times the close: the peer answers at once, so it must not take the close-handshake timeout.
   */
  {
    path: '/close-at-once',
    options: { closeHandshakeTimeout: CLOSE_AT_ONCE_TIMEOUT_MS },
    ...acting(
      (conn, _c, report) => timedClose(conn, report, CLOSE_AT_ONCE.code, CLOSE_AT_ONCE.reason),
      'drain',
    ),
  },
  /** Never reads until its connection starts closing, then reads to the end. */
  {
    path: '/hold',
    // A small bound, so that a flooding peer gets the socket paused soon.
    options: { maxInboundBuffer: SMALL_INBOUND_BUFFER, maxMessageSize: SMALL_INBOUND_BUFFER / 2 },
    ...acting(
      (conn) => new Promise((resolve) => conn.signal.addEventListener('abort', () => resolve())),
      'drain',
    ),
  },
  /**
   * Reads nothing while the peer floods (past the small inbound bound: the socket is paused), then
   * closes with 4000 and times the close, which must read through the flood to the peer's answer.
   */
  {
    path: '/close-paused',
    options: {
      maxInboundBuffer: SMALL_INBOUND_BUFFER,
      maxMessageSize: SMALL_INBOUND_BUFFER / 2,
      closeHandshakeTimeout: CLOSE_PAUSED_TIMEOUT_MS,
    },
    ...acting(async (conn, _c, report) => {
      await sleep(SLOW_READER_DELAY_MS / 3)
      await timedClose(conn, report, 4000, 'server is done')
    }, 'drain'),
  },
  /**
   * Echoes in a `for await` loop that catches nothing, so whatever ends the loop reaches the
   * upgrader; then, with `?cleanup=ms`, works that long before it returns. The event form's
   * `close` handler does the same work.
   */
  {
    path: '/loop',
    serve: (report) => async (conn, c) => {
      for await (const message of conn) {
        report.messagesRead++
        await conn.send(message.data)
      }
      const cleanup = Number(c.req.query('cleanup') ?? 0)
      if (cleanup > 0) await sleep(cleanup)
    },
    events: (report) => ({
      open(conn, c) {
        conn.data = { cleanup: Number(c.req.query('cleanup') ?? 0) }
      },
      message(conn, message) {
        report.messagesRead++
        return echoBack(conn, message)
      },
      async close(conn) {
        const { cleanup } = conn.data as { cleanup: number }
        if (cleanup > 0) await sleep(cleanup)
      },
    }),
  },
  /** Ignores its connection, its signal included: it never ends. */
  { path: '/ignores-signal', ...acting(() => new Promise<void>(() => {}), 'end') },
  /** Waits `?delay=ms` in `upgradeHeaders`, after the upgrader accepted the request, then echoes. */
  {
    path: '/late-open',
    hooks: (report) => ({
      async upgradeHeaders(c) {
        report.held = true
        await sleep(Number(c.req.query('delay') ?? 0))
        return {}
      },
    }),
    ...answering(echoBack),
  },
  /** Returns the header named `?name=` from `upgradeHeaders`: a handshake header is refused. */
  {
    path: '/handshake-header',
    options: { subprotocols: SERVER_SUBPROTOCOLS },
    hooks: () => ({
      upgradeHeaders: (c) => ({ [c.req.query('name') ?? 'Sec-WebSocket-Protocol']: 'v1.chat' }),
    }),
    ...answering(echoBack),
  },

  // What only event controllers have to prove (checked by `scenarios/events.ts`).

  /** Logs a throw in `message()` on `fail`; echoes anything else and records every call. */
  {
    path: '/message-throws',
    events: (report) => ({
      message(conn, message) {
        handlerLog(report).push(`message ${String(message.data)}`)
        if (message.data === 'fail') throw new Error(THROWN_MESSAGE)
        if (message.data === 'fail later') {
          return sleep(10).then(() => {
            throw new Error(THROWN_MESSAGE)
          })
        }
        return conn.send(message.data)
      },
    }),
  },
  /**
   * Each `message()` takes {@link OVERLAP_HANDLER_MS} and records when it starts and ends; the
   * answer to `done` lists the calls, so the peer sees whether any two overlapped.
   */
  {
    path: '/overlap',
    events: (report) => ({
      async message(conn, message) {
        const log = handlerLog(report)
        const data = String(message.data)
        if (data === 'done') return conn.send(JSON.stringify(log))
        log.push(`message ${data}`)
        await sleep(OVERLAP_HANDLER_MS)
        log.push(`end ${data}`)
      },
    }),
  },
  /** `message()` holds the connection for a while; `close` must wait for it, and run once. */
  {
    path: '/close-after-handler',
    events: (report) => ({
      async message(conn, message) {
        const log = handlerLog(report)
        log.push(`message ${String(message.data)}`)
        await conn.send('started')
        await sleep(300)
        log.push(`end ${String(message.data)}`)
      },
      close(_conn, err) {
        handlerLog(report).push(`close ${err.code}`)
      },
    }),
  },
  /**
   * `message()` closes with 4000 before its first `await` (synchronously with `?sync=1`), then
   * ends: `close` must run after it, also where the runtime reports the end inside `close()`
   * (Bun).
   */
  {
    path: '/close-in-message',
    events: (report) => ({
      open(conn, c) {
        conn.data = { sync: c.req.query('sync') === '1' }
      },
      message(conn, message) {
        const log = handlerLog(report)
        const data = String(message.data)
        log.push(`message ${data}`)
        void conn.close(4000, 'closed in message')
        if ((conn.data as { sync: boolean }).sync) {
          log.push(`end ${data}`)
          return
        }
        return sleep(OVERLAP_HANDLER_MS).then(() => {
          log.push(`end ${data}`)
        })
      },
      close(_conn, err) {
        handlerLog(report).push(`close ${err.code}`)
      },
    }),
  },
]

// --- the two route families ---

/**
 * Mounts one form of a scenario. The upgrader is made per request so that its logger records
 * into that connection's report; making one is cheap.
 */
function mount(
  app: Hono,
  path: string,
  options: UpgradeOptions | undefined,
  controller: (report: ServerReport) => ControllerWithHooks | EventControllerWithHooks,
): void {
  const route = path.slice(1)
  app.get(path, async (c, next) => {
    const report = reportFor(c, route)
    // `?hold=ms` keeps the request waiting before the upgrader sees it: an upgrade on its way.
    const hold = Number(c.req.query('hold') ?? 0)
    if (hold > 0) {
      report.held = true
      await sleep(hold)
    }
    const response = await upgrade(controller(report), {
      logger: recordingLogger(report),
      ...options,
    })(c, next)
    // `?after=ms` holds the upgrade's answer once the upgrader has handed the request to the
    // adapter: where the runtime opens the socket only once the answer is out (Node, Deno, the
    // test kit), the upgrade is on its way, and not yet open, meanwhile.
    const after = Number(c.req.query('after') ?? 0)
    if (after > 0) {
      report.held = true
      await sleep(after)
    }
    return response
  })
}

/** The `serve` form: `served` once `serve` starts, `settled` once it returned or threw. */
function serveForm(scenario: Scenario, report: ServerReport): ControllerWithHooks {
  const serve = (scenario.serve as NonNullable<Scenario['serve']>)(report)
  return {
    ...scenario.hooks?.(report),
    // Not async: a synchronous throw must reach the upgrader as one.
    serve(conn, c) {
      report.served = true
      let result: ReturnType<typeof serve>
      try {
        result = serve(conn, c)
      } catch (err) {
        report.settled = true
        throw err
      }
      return Promise.resolve(result).finally(() => {
        report.settled = true
      })
    },
  }
}

/**
 * The event form: `served` once `open` starts, and, since an event controller has no end of its
 * own, `settled` once `close` has run. `close` records the connection's end as `readError`, the
 * twin of the error a `serve` loop's last read sees.
 */
function eventForm(scenario: Scenario, report: ServerReport): EventControllerWithHooks {
  const events = (scenario.events as NonNullable<Scenario['events']>)(report)
  return {
    ...scenario.hooks?.(report),
    // Not async: a synchronous throw must reach the upgrader as one.
    open(conn, c) {
      report.served = true
      return events.open?.(conn, c)
    },
    message: (conn, message) => events.message(conn, message),
    async close(conn, err) {
      report.readError = describeError(err)
      try {
        await events.close?.(conn, err)
      } finally {
        report.settled = true
      }
    },
  }
}

/** Adds {@link MIDDLEWARE_HEADER} once the handler has answered, as CORS middleware does. */
async function addMiddlewareHeader(c: Context, next: () => Promise<void>): Promise<void> {
  await next()
  c.res.headers.set(MIDDLEWARE_HEADER.name, MIDDLEWARE_HEADER.value)
}

/**
 * Makes the conformance app: each scenario's `serve` form at its path and its event form under
 * {@link EVENTS_PREFIX}, the topic routes, `GET /report/:id` (the JSON {@link ServerReport} of the
 * connection opened with `?id=<id>`, 404 when there is none) and `GET /health` (`ok`).
 */
export function createConformanceApp(): Hono {
  const app = new Hono()
  app.use('/middleware-headers', addMiddlewareHeader)
  app.use(`${EVENTS_PREFIX}/middleware-headers`, addMiddlewareHeader)
  for (const scenario of scenarios) {
    const { path, options } = scenario
    if (scenario.serve) mount(app, path, options, (report) => serveForm(scenario, report))
    if (scenario.events) {
      mount(app, `${EVENTS_PREFIX}${path}`, options, (report) => eventForm(scenario, report))
    }
  }
  mountTopicRoutes(app, { report: reportFor, logger: recordingLogger, describe: describeError })
  app.get('/report/:id', (c) => {
    const report = reports.get(c.req.param('id'))
    return report ? c.json(report) : c.json({ error: 'Not Found' }, 404)
  })
  app.get('/health', (c) => c.text('ok'))
  return app
}
