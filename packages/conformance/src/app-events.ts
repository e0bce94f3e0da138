/**
 * The conformance app's routes for event controllers (`open`, `message`, `close`), mounted under
 * {@link EVENTS_PREFIX}: the same path, the same scenario and the same report as each `serve`
 * route of `app.ts`, so the suite runs its scenarios unchanged against either kind. Where `serve`
 * does something and then returns, `open` does it and then closes normally.
 *
 * A few routes exist only here (`/message-throws`, `/overlap`, `/close-after-handler`): what only
 * an event controller has to prove, checked by `scenarios/events.ts`.
 * @module
 */
import {
  CloseError,
  type Conn,
  type EventControllerWithHooks,
  type Message,
  type UpgradeOptions,
  upgrade,
} from '@handshake/core'
import { type Context, Hono } from 'hono'
import {
  ALLOWED_ORIGIN,
  CLOSE_AT_ONCE,
  CLOSE_AT_ONCE_TIMEOUT_MS,
  CLOSE_PAUSED_TIMEOUT_MS,
  DEBUG_ERROR_MESSAGE,
  describeError,
  MIDDLEWARE_HEADER,
  ON_ERROR_THROWN_MESSAGE,
  recordingLogger,
  reportFor,
  SERVER_SUBPROTOCOLS,
  type ServerReport,
  SHORT_CLOSE_TIMEOUT_MS,
  SLOW_READER_DELAY_MS,
  SMALL_INBOUND_BUFFER,
  SMALL_MAX_MESSAGE_SIZE,
  THROWN_MESSAGE,
  UPGRADE_HEADER,
} from './app.ts'

/** Where the event controllers' routes are mounted: `/events/echo` is `/echo`'s twin. */
export const EVENTS_PREFIX = '/events'
/** How long each `message()` of `/events/overlap` takes, in milliseconds. */
export const OVERLAP_HANDLER_MS = 20

type EventScenario = (report: ServerReport) => EventControllerWithHooks
type EventRoute = { path: string; scenario: EventScenario; options?: UpgradeOptions }

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * Mounts a scenario as `mount()` of `app.ts` does: `served` once `open` starts, and, since an
 * event controller has no end of its own, `settled` once `close` has run. `close` records the
 * connection's end as `readError`, the twin of the error a `serve` loop's last read sees.
 */
function mount(app: Hono, { path, scenario, options }: EventRoute): void {
  const route = `events${path}`
  app.get(path, (c, next) => {
    const report = reportFor(c, route)
    const controller = scenario(report)
    const wrapped: EventControllerWithHooks = Object.assign(Object.create(controller), {
      // Not async: a synchronous throw must reach the upgrader as one.
      open(conn: Conn, context: Context) {
        report.served = true
        return controller.open?.(conn, context)
      },
      async close(conn: Conn, err: CloseError) {
        report.readError = describeError(err)
        try {
          await controller.close?.(conn, err)
        } finally {
          report.settled = true
        }
      },
    })
    return upgrade(wrapped, { logger: recordingLogger(report), ...options })(c, next)
  })
}

// --- the twins of app.ts's scenarios ---

/** Echoes every message, counting them. */
const echo: EventScenario = (report) => ({
  message(conn, message) {
    report.messagesRead++
    return conn.send(message.data)
  },
})

/** Echoes binary messages as a view into the middle of a larger buffer, text as is. */
const echoView: EventScenario = (report) => ({
  message(conn, message) {
    report.messagesRead++
    if (message.type === 'text') return conn.send(message.data)
    const padded = new Uint8Array(message.data.byteLength + 16).fill(0xee)
    padded.set(message.data, 7)
    return conn.send(padded.subarray(7, 7 + message.data.byteLength))
  },
})

/** Answers each binary message with the shape of the view it arrived in. */
const binaryShape: EventScenario = (report) => ({
  message(conn, message) {
    report.messagesRead++
    if (message.type !== 'binary') return
    const { byteLength, byteOffset, buffer } = message.data
    return conn.send(
      JSON.stringify({ byteLength, byteOffset, bufferByteLength: buffer.byteLength }),
    )
  },
})

/** Sends a greeting, then closes normally: the twin of a `serve` that returns. */
const serveReturns: EventScenario = () => ({
  async open(conn) {
    await conn.send('hello')
    await conn.closeNormal()
  },
  message() {},
})

/** Records `onError` calls. */
function withOnError(
  report: ServerReport,
  open: EventControllerWithHooks['open'],
): EventControllerWithHooks {
  return {
    open,
    message() {},
    onError(_c, err) {
      report.onErrorCalls.push(err instanceof Error ? err.message : String(err))
    },
  }
}

/** `open` throws a normal close error: closed normally, nothing reported. */
const closeError: EventScenario = (report) =>
  withOnError(report, async (conn) => {
    await conn.send('hello')
    throw new CloseError(1001, 'going away', true)
  })

/** `open` throws synchronously, with no `onError`: the logger gets it, then 1011. */
const throwsSync: EventScenario = () => ({
  open() {
    throw new Error(THROWN_MESSAGE)
  },
  message() {},
})

/** `open` rejects after a tick, with no `onError`: the logger gets it, then 1011. */
const rejectsAsync: EventScenario = () => ({
  async open(conn) {
    await conn.send('hello')
    await sleep(10)
    throw new Error(THROWN_MESSAGE)
  },
  message() {},
})

/** `open` throws with `onError` present: `onError` gets it, the logger does not, then 1011. */
const throwsHandled: EventScenario = (report) =>
  withOnError(report, async () => {
    throw new Error(THROWN_MESSAGE)
  })

/** `open` throws a long multibyte message under `debug`: the 1011 reason, cut to 123 bytes. */
const throwsDebug: EventScenario = () => ({
  async open() {
    throw new Error(DEBUG_ERROR_MESSAGE)
  },
  message() {},
})

/** `open` throws and `onError` throws too: logged, and the close still happens. */
const onErrorThrows: EventScenario = (report) => ({
  async open() {
    throw new Error(THROWN_MESSAGE)
  },
  message() {},
  onError(_c, err) {
    report.onErrorCalls.push(err instanceof Error ? err.message : String(err))
    throw new Error(ON_ERROR_THROWN_MESSAGE)
  },
})

/** Adds a header to the 101 response, then echoes. */
const upgradeHeaders: EventScenario = (report) => ({
  upgradeHeaders: () => ({ [UPGRADE_HEADER.name]: UPGRADE_HEADER.value }),
  message: echo(report).message,
})

/** Sends the chosen subprotocol (`''` when none) first, then echoes. */
const subprotocols: EventScenario = (report) => ({
  open: (conn) => conn.send(`protocol:${conn.protocol}`),
  message: echo(report).message,
})

/** Accepts only {@link ALLOWED_ORIGIN}, whatever the Host; echoes. */
const customOrigin: EventScenario = (report) => ({
  checkOrigin: (c) => c.req.header('origin') === ALLOWED_ORIGIN,
  message: echo(report).message,
})

/** Answers failed upgrades itself, as plain text with its own header. */
const customUpgradeError: EventScenario = (report) => ({
  onUpgradeError: (_c, status, reason) =>
    new Response(`custom ${status}: ${reason.message}`, {
      status,
      headers: { 'Content-Type': 'text/plain', 'X-Custom-Error': 'yes' },
    }),
  message: echo(report).message,
})

/** Sends `closing`, then closes with 4000 and times how long `close()` takes. */
const closeTimeout: EventScenario = (report) => ({
  async open(conn) {
    await conn.send('closing')
    const started = Date.now()
    await conn.close(4000, 'server is done')
    report.closeMs = Date.now() - started
    report.stateAfterClose = conn.state
  },
  message() {
    report.messagesRead++
  },
})

/** Calls `close()` three times at once: one close frame (4001), and all three resolve together. */
const concurrentClose: EventScenario = (report) => ({
  async open(conn) {
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
  },
  message() {},
})

/** Tries invalid closes (each a RangeError, nothing sent), then closes normally. */
const badClose: EventScenario = (report) => ({
  async open(conn) {
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
    await conn.closeNormal()
  },
  message() {},
})

/**
 * `open` takes {@link SLOW_READER_DELAY_MS}, so messages wait behind it; then counts them
 * until `end` and answers `count:N`.
 */
const slowReader: EventScenario = (report) => ({
  open: () => sleep(SLOW_READER_DELAY_MS),
  message(conn, message) {
    if (message.type === 'text' && message.data === 'end') {
      return conn.send(`count:${report.messagesRead}`)
    }
    report.messagesRead++
  },
})

/** Pings where the runtime can and says what happened, then echoes. */
const ping: EventScenario = (report) => ({
  async open(conn) {
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
  },
  message: echo(report).message,
})

/** Sends what `open` saw, as JSON, and records it; then echoes. */
const inspect: EventScenario = (report) => ({
  open(conn, c) {
    report.saw = {
      protocol: conn.protocol,
      state: conn.state,
      canPing: conn.canPing,
      closeHandshakeTimeout: conn.getCloseHandshakeTimeout(),
      // The route as the app routes it: the mount prefix is the suite's business.
      path: c.req.path.slice(EVENTS_PREFIX.length),
      probeHeader: c.req.header('x-probe') ?? null,
      query: c.req.query(),
      raw: {
        isRequest: c.req.raw instanceof Request,
        method: c.req.raw.method,
        path: new URL(c.req.raw.url).pathname.slice(EVENTS_PREFIX.length),
        cloneProbe: c.req.raw.clone().headers.get('x-probe'),
      },
    }
    return conn.send(JSON.stringify(report.saw))
  },
  message: echo(report).message,
})

// --- what only event controllers have ---

/** The report's record of handler calls, made on first use. */
function handlerLog(report: ServerReport): string[] {
  report.handlers ??= []
  return report.handlers
}

/** Logs a throw in `message()` on `fail`; echoes anything else and records every call. */
const messageThrows: EventScenario = (report) => ({
  message(conn, message: Message) {
    const log = handlerLog(report)
    log.push(`message ${String(message.data)}`)
    if (message.data === 'fail') throw new Error(THROWN_MESSAGE)
    if (message.data === 'fail later') {
      return sleep(10).then(() => {
        throw new Error(THROWN_MESSAGE)
      })
    }
    return conn.send(message.data)
  },
})

/**
 * Each `message()` takes {@link OVERLAP_HANDLER_MS} and records when it starts and ends; the
 * answer to `done` lists the calls, so the peer sees whether any two overlapped.
 */
const overlap: EventScenario = (report) => ({
  async message(conn, message) {
    const log = handlerLog(report)
    const data = String(message.data)
    if (data === 'done') return conn.send(JSON.stringify(log))
    log.push(`message ${data}`)
    await sleep(OVERLAP_HANDLER_MS)
    log.push(`end ${data}`)
  },
})

/** `message()` holds the connection for a while; `close` must wait for it, and run once. */
const closeAfterHandler: EventScenario = (report) => ({
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
})

/** Closes with {@link CLOSE_AT_ONCE} first thing in `open`, and times the close. */
const closeAtOnce: EventScenario = (report) => ({
  async open(conn) {
    const started = Date.now()
    await conn.close(CLOSE_AT_ONCE.code, CLOSE_AT_ONCE.reason)
    report.closeMs = Date.now() - started
    report.stateAfterClose = conn.state
  },
  message() {
    report.messagesRead++
  },
})

/** Keeps `open` busy while the peer floods (messages wait: paused), then closes with 4000. */
const closePaused: EventScenario = (report) => ({
  async open(conn) {
    await sleep(SLOW_READER_DELAY_MS / 3)
    const started = Date.now()
    await conn.close(4000, 'server is done')
    report.closeMs = Date.now() - started
    report.stateAfterClose = conn.state
  },
  message() {
    report.messagesRead++
  },
})

/** Returns the header named `?name=` from `upgradeHeaders`: a handshake header is refused. */
const handshakeHeader: EventScenario = (report) => ({
  upgradeHeaders: (c) => ({ [c.req.query('name') ?? 'Sec-WebSocket-Protocol']: 'v1.chat' }),
  message: echo(report).message,
})

/** The makers of the event app's routes: a function, so that it runs after app.ts is loaded. */
function routes(): EventRoute[] {
  return [
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
    {
      path: '/subprotocols',
      scenario: subprotocols,
      options: { subprotocols: SERVER_SUBPROTOCOLS },
    },
    { path: '/custom-origin', scenario: customOrigin },
    { path: '/custom-upgrade-error', scenario: customUpgradeError },
    {
      path: '/close-timeout',
      scenario: closeTimeout,
      options: { closeHandshakeTimeout: SHORT_CLOSE_TIMEOUT_MS },
    },
    { path: '/concurrent-close', scenario: concurrentClose },
    { path: '/bad-close', scenario: badClose },
    { path: '/max-message', scenario: echo, options: { maxMessageSize: SMALL_MAX_MESSAGE_SIZE } },
    {
      path: '/slow-reader',
      scenario: slowReader,
      options: { maxInboundBuffer: SMALL_INBOUND_BUFFER, maxMessageSize: SMALL_INBOUND_BUFFER / 2 },
    },
    { path: '/ping', scenario: ping },
    { path: '/inspect', scenario: inspect },
    { path: '/message-throws', scenario: messageThrows },
    { path: '/overlap', scenario: overlap },
    { path: '/close-after-handler', scenario: closeAfterHandler },
    {
      path: '/close-at-once',
      scenario: closeAtOnce,
      options: { closeHandshakeTimeout: CLOSE_AT_ONCE_TIMEOUT_MS },
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
    {
      path: '/handshake-header',
      scenario: handshakeHeader,
      options: { subprotocols: SERVER_SUBPROTOCOLS },
    },
  ]
}

/** The event controllers' twin routes, to mount under {@link EVENTS_PREFIX}. */
export function createEventApp(): Hono {
  const app = new Hono()
  app.use('/middleware-headers', async (c, next) => {
    await next()
    c.res.headers.set(MIDDLEWARE_HEADER.name, MIDDLEWARE_HEADER.value)
  })
  for (const route of routes()) mount(app, route)
  return app
}
