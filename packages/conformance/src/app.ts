/**
 * The conformance app: one Hono app with a route per scenario, each served by a small
 * controller. It imports only `hono` and `@handshake/core`, so Node, Bun, Deno and workerd all run
 * this same module; each runtime's test entry imports it plus its adapter and serves it.
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
  type ErrorHandler,
  type HeaderUpgrader,
  type Logger,
  type OriginChecker,
  type UpgradeErrorHandler,
  type UpgradeOptions,
  upgrade,
} from '@handshake/core'
import { type Context, Hono } from 'hono'
// .ts specifiers: Deno runs this module from source, and resolves no .js to a .ts file.
import { createEventApp, EVENTS_PREFIX } from './app-events.ts'
import { mountTopicRoutes } from './topics-app.ts'

// --- what the suite and the app agree on ---

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

/** The report of the connection a request opens (by its `?id=`), made on first use. */
/**
 * The report of a connection id, read in the server's own process: what `GET /report/:id`
 * answers, for when the server no longer listens (after its shutdown).
 */
export function findReport(id: string): ServerReport | undefined {
  return reports.get(id)
}

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

type Scenario = (report: ServerReport) => Controller
type Route = { path: string; scenario: Scenario; options?: UpgradeOptions }

/**
 * Mounts a scenario. The upgrader is made per request so that its logger records into that
 * connection's report; making one is cheap.
 */
function mount(app: Hono, { path, scenario, options }: Route): void {
  const route = path.slice(1)
  app.get(path, async (c, next) => {
    const report = reportFor(c, route)
    // `?hold=ms` keeps the request waiting before the upgrader sees it: an upgrade on its way.
    const hold = Number(c.req.query('hold') ?? 0)
    if (hold > 0) {
      report.held = true
      await sleep(hold)
    }
    const controller = scenario(report)
    const wrapped: Controller = Object.assign(Object.create(controller), {
      // Not async: a synchronous throw must reach the upgrader as one.
      serve(conn: Conn, context: Context) {
        report.served = true
        let result: void | Promise<void>
        try {
          result = controller.serve(conn, context)
        } catch (err) {
          report.settled = true
          throw err
        }
        return Promise.resolve(result).finally(() => {
          report.settled = true
        })
      },
    })
    return upgrade(wrapped, { logger: recordingLogger(report), ...options })(c, next)
  })
}

// --- the scenarios ---

/** Echoes every message until the connection ends; records the error the last read saw. */
const echo: Scenario = (report) => ({
  async serve(conn) {
    try {
      for (;;) {
        const message = await conn.read()
        report.messagesRead++
        await conn.send(message.data)
      }
    } catch (err) {
      report.readError = describeError(err)
    }
  },
})

/** Echoes binary messages as a view into the middle of a larger buffer, text as is. */
const echoView: Scenario = (report) => ({
  async serve(conn) {
    try {
      for (;;) {
        const message = await conn.read()
        report.messagesRead++
        if (message.type === 'text') {
          await conn.send(message.data)
          continue
        }
        const padded = new Uint8Array(message.data.byteLength + 16).fill(0xee)
        padded.set(message.data, 7)
        await conn.send(padded.subarray(7, 7 + message.data.byteLength))
      }
    } catch (err) {
      report.readError = describeError(err)
    }
  },
})

/** Answers each binary message with the shape of the view it arrived in. */
const binaryShape: Scenario = (report) => ({
  async serve(conn) {
    try {
      for (;;) {
        const message = await conn.read()
        report.messagesRead++
        if (message.type === 'binary') {
          const { byteLength, byteOffset, buffer } = message.data
          await conn.send(
            JSON.stringify({ byteLength, byteOffset, bufferByteLength: buffer.byteLength }),
          )
        }
      }
    } catch (err) {
      report.readError = describeError(err)
    }
  },
})

/** Sends a greeting, then returns: the upgrader closes with 1000. */
const serveReturns: Scenario = () => ({
  async serve(conn) {
    await conn.send('hello')
  },
})

/** Records `onError` calls; every throwing scenario has it, except the logger ones. */
function withOnError(report: ServerReport, serve: Controller['serve']): Controller & ErrorHandler {
  return {
    serve,
    onError(_c, err) {
      report.onErrorCalls.push(err instanceof Error ? err.message : String(err))
    },
  }
}

/** Throws a normal close error: the upgrader closes normally and reports nothing. */
const closeError: Scenario = (report) =>
  withOnError(report, async (conn) => {
    await conn.send('hello')
    throw new CloseError(1001, 'going away', true)
  })

/** Throws synchronously, with no `onError`: the logger gets it, then 1011. */
const throwsSync: Scenario = () => ({
  serve() {
    throw new Error(THROWN_MESSAGE)
  },
})

/** Rejects after a tick, with no `onError`: the logger gets it, then 1011. */
const rejectsAsync: Scenario = () => ({
  async serve(conn) {
    await conn.send('hello')
    await sleep(10)
    throw new Error(THROWN_MESSAGE)
  },
})

/** Throws with `onError` present: `onError` gets it, the logger does not, then 1011. */
const throwsHandled: Scenario = (report) =>
  withOnError(report, async () => {
    throw new Error(THROWN_MESSAGE)
  })

/** Throws a long multibyte message under `debug`: it becomes the 1011 reason, cut to 123 bytes. */
const throwsDebug: Scenario = () => ({
  async serve() {
    throw new Error(DEBUG_ERROR_MESSAGE)
  },
})

/** `serve` throws and `onError` throws too: logged, and the close still happens. */
const onErrorThrows: Scenario = (report) => ({
  async serve() {
    throw new Error(THROWN_MESSAGE)
  },
  onError(_c: Context, err: unknown) {
    report.onErrorCalls.push(err instanceof Error ? err.message : String(err))
    throw new Error(ON_ERROR_THROWN_MESSAGE)
  },
})

/** Adds a header to the 101 response, then echoes. */
const upgradeHeaders: Scenario = (report) => {
  const controller: Controller & HeaderUpgrader = {
    upgradeHeaders: () => ({ [UPGRADE_HEADER.name]: UPGRADE_HEADER.value }),
    serve: echo(report).serve,
  }
  return controller
}

/** Sends the chosen subprotocol (`''` when none) as its first message, then echoes. */
const subprotocols: Scenario = (report) => ({
  async serve(conn, c) {
    await conn.send(`protocol:${conn.protocol}`)
    await echo(report).serve(conn, c)
  },
})

/** Accepts only {@link ALLOWED_ORIGIN}, whatever the Host; echoes. */
const customOrigin: Scenario = (report) => {
  const controller: Controller & OriginChecker = {
    checkOrigin: (c) => c.req.header('origin') === ALLOWED_ORIGIN,
    serve: echo(report).serve,
  }
  return controller
}

/** Answers failed upgrades itself, as plain text with its own header. */
const customUpgradeError: Scenario = (report) => {
  const controller: Controller & UpgradeErrorHandler = {
    onUpgradeError: (_c, status, reason) =>
      new Response(`custom ${status}: ${reason.message}`, {
        status,
        headers: { 'Content-Type': 'text/plain', 'X-Custom-Error': 'yes' },
      }),
    serve: echo(report).serve,
  }
  return controller
}

/**
 * Sends `closing`, then closes with 4000 and times how long `close()` takes: about the short
 * timeout when the peer never answers, less when it does.
 */
const closeTimeout: Scenario = (report) => ({
  async serve(conn) {
    await conn.send('closing')
    const started = Date.now()
    await conn.close(4000, 'server is done')
    report.closeMs = Date.now() - started
    report.stateAfterClose = conn.state
    await drain(conn, report)
  },
})

/** Calls `close()` three times at once: one close frame (4001), and all three resolve together. */
const concurrentClose: Scenario = (report) => ({
  async serve(conn) {
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
    await drain(conn, report)
  },
})

/** Tries invalid closes (each a RangeError, nothing sent), then returns: 1000 is the only frame. */
const badClose: Scenario = (report) => ({
  async serve(conn) {
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
  },
})

/** Waits before reading anything, then counts messages until `end` and answers `count:N`. */
const slowReader: Scenario = (report) => ({
  async serve(conn) {
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
})

/** Pings where the runtime can and says what happened: `pong`, or `cannot-ping: <error>`. */
const ping: Scenario = (report) => ({
  async serve(conn, c) {
    if (conn.canPing) {
      await conn.ping()
      await conn.send('pong')
    } else {
      const error = await conn.ping().then(
        () => 'resolved',
        (err: unknown) => (err instanceof Error ? err.name : 'unknown'),
      )
      await conn.send(`cannot-ping:${error}`)
    }
    await echo(report).serve(conn, c)
  },
})

/** Sends what `serve` saw, as JSON, and records it; then echoes. */
const inspect: Scenario = (report) => ({
  async serve(conn, c) {
    report.saw = {
      protocol: conn.protocol,
      state: conn.state,
      canPing: conn.canPing,
      closeHandshakeTimeout: conn.getCloseHandshakeTimeout(),
      path: c.req.path,
      probeHeader: c.req.header('x-probe') ?? null,
      query: c.req.query(),
      // The raw request stays a whole Request, whatever the adapter keeps of it after the upgrade.
      raw: {
        isRequest: c.req.raw instanceof Request,
        method: c.req.raw.method,
        path: new URL(c.req.raw.url).pathname,
        cloneProbe: c.req.raw.clone().headers.get('x-probe'),
      },
    }
    await conn.send(JSON.stringify(report.saw))
    await echo(report).serve(conn, c)
  },
})

/**
 * Closes with {@link CLOSE_AT_ONCE} before its first `await` (refusing a client, say), and
 * times the close: the peer answers at once, so it must not take the close-handshake timeout.
 */
const closeAtOnce: Scenario = (report) => ({
  serve(conn) {
    const started = Date.now()
    return conn.close(CLOSE_AT_ONCE.code, CLOSE_AT_ONCE.reason).then(() => {
      report.closeMs = Date.now() - started
      report.stateAfterClose = conn.state
      return drain(conn, report)
    })
  },
})

/** The close-handshake timeout of `/close-paused`: its close must take far less. */
export const CLOSE_PAUSED_TIMEOUT_MS = 4000

/**
 * Reads nothing while the peer floods (past the small inbound bound: the socket is paused), then
 * closes with 4000 and times the close, which must read through the flood to the peer's answer.
 */
const closePaused: Scenario = (report) => ({
  async serve(conn) {
    await sleep(SLOW_READER_DELAY_MS / 3)
    const started = Date.now()
    await conn.close(4000, 'server is done')
    report.closeMs = Date.now() - started
    report.stateAfterClose = conn.state
    await drain(conn, report)
  },
})

/** Never reads until its connection starts closing, then reads to the end. */
const hold: Scenario = (report) => ({
  async serve(conn) {
    await new Promise((resolve) => conn.signal.addEventListener('abort', resolve))
    await drain(conn, report)
  },
})

/** Ignores its connection, its signal included: `serve` never returns. */
const ignoresSignal: Scenario = () => ({
  serve: () => new Promise<void>(() => {}),
})

/** Waits `?delay=ms` in `upgradeHeaders`, after the upgrader accepted the request, then echoes. */
const lateOpen: Scenario = (report) => {
  const controller: Controller & HeaderUpgrader = {
    async upgradeHeaders(c) {
      report.held = true
      await sleep(Number(c.req.query('delay') ?? 0))
      return {}
    },
    serve: echo(report).serve,
  }
  return controller
}

/** Returns the header named `?name=` from `upgradeHeaders`: a handshake header is refused. */
const handshakeHeader: Scenario = (report) => {
  const controller: Controller & HeaderUpgrader = {
    upgradeHeaders: (c) => ({ [c.req.query('name') ?? 'Sec-WebSocket-Protocol']: 'v1.chat' }),
    serve: echo(report).serve,
  }
  return controller
}

/** Every scenario route, with its options. */
const routes: Route[] = [
  { path: '/echo', scenario: echo },
  { path: '/echo-view', scenario: echoView },
  { path: '/binary-shape', scenario: binaryShape },
  { path: '/serve-returns', scenario: serveReturns },
  { path: '/close-error', scenario: closeError },
  { path: '/throws', scenario: throwsSync },
  { path: '/rejects', scenario: rejectsAsync },
  { path: '/throws-handled', scenario: throwsHandled },
  { path: '/debug', scenario: throwsDebug, options: { debug: true } },
  { path: '/on-error-throws', scenario: onErrorThrows },
  { path: '/upgrade-headers', scenario: upgradeHeaders },
  { path: '/middleware-headers', scenario: echo },
  { path: '/subprotocols', scenario: subprotocols, options: { subprotocols: SERVER_SUBPROTOCOLS } },
  { path: '/custom-origin', scenario: customOrigin },
  { path: '/custom-upgrade-error', scenario: customUpgradeError },
  {
    path: '/close-timeout',
    scenario: closeTimeout,
    options: { closeHandshakeTimeout: SHORT_CLOSE_TIMEOUT_MS },
  },
  { path: '/concurrent-close', scenario: concurrentClose },
  { path: '/bad-close', scenario: badClose },
  {
    path: '/max-message',
    scenario: echo,
    options: { maxMessageSize: SMALL_MAX_MESSAGE_SIZE },
  },
  {
    path: '/slow-reader',
    scenario: slowReader,
    // The bound must hold one whole message, or the upgrader refuses the options.
    options: { maxInboundBuffer: SMALL_INBOUND_BUFFER, maxMessageSize: SMALL_INBOUND_BUFFER / 2 },
  },
  { path: '/ping', scenario: ping },
  { path: '/inspect', scenario: inspect },
  {
    path: '/close-at-once',
    scenario: closeAtOnce,
    options: { closeHandshakeTimeout: CLOSE_AT_ONCE_TIMEOUT_MS },
  },
  {
    path: '/hold',
    scenario: hold,
    // A small bound, so that a flooding peer gets the socket paused soon.
    options: { maxInboundBuffer: SMALL_INBOUND_BUFFER, maxMessageSize: SMALL_INBOUND_BUFFER / 2 },
  },
  {
    path: '/close-paused',
    scenario: closePaused,
    options: {
      maxInboundBuffer: SMALL_INBOUND_BUFFER,
      maxMessageSize: SMALL_INBOUND_BUFFER / 2,
      closeHandshakeTimeout: CLOSE_PAUSED_TIMEOUT_MS,
    },
  },
  { path: '/ignores-signal', scenario: ignoresSignal },
  { path: '/late-open', scenario: lateOpen },
  {
    path: '/handshake-header',
    scenario: handshakeHeader,
    options: { subprotocols: SERVER_SUBPROTOCOLS },
  },
]

/**
 * Makes the conformance app: a route per scenario, plus `GET /report/:id` (the JSON
 * {@link ServerReport} of the connection opened with `?id=<id>`, 404 when there is none) and
 * `GET /health` (`ok`).
 */
export function createConformanceApp(): Hono {
  const app = new Hono()
  // As CORS or secure-headers middleware do: a header added once the handler has answered.
  app.use('/middleware-headers', async (c, next) => {
    await next()
    c.res.headers.set(MIDDLEWARE_HEADER.name, MIDDLEWARE_HEADER.value)
  })
  for (const route of routes) mount(app, route)
  mountTopicRoutes(app, { report: reportFor, logger: recordingLogger, describe: describeError })
  // The same scenarios, served by event controllers (`open`, `message`, `close`).
  app.route(EVENTS_PREFIX, createEventApp())
  app.get('/report/:id', (c) => {
    const report = reports.get(c.req.param('id'))
    return report ? c.json(report) : c.json({ error: 'Not Found' }, 404)
  })
  app.get('/health', (c) => c.text('ok'))
  return app
}
