import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { type Context, Hono } from 'hono'
import { mount } from 'hono/mount'
import { secureHeaders } from 'hono/secure-headers'
import { describe, expect, it, vi } from 'vitest'
import {
  ADAPTER,
  type Adapter,
  chooseSubprotocol,
  createHub,
  findUpgrader,
  validateHandshake,
} from '../src/adapter.js'
import {
  type Controller,
  type ControllerWithHooks,
  isSameOrigin,
  Upgrader,
  upgrade,
} from '../src/index.js'
import { connect, UpgradeRejectedError } from '../src/testing.js'

const valid = {
  Upgrade: 'websocket',
  Connection: 'keep-alive, Upgrade',
  'Sec-WebSocket-Version': '13',
  'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
}
const request = (headers: Record<string, string>, init: RequestInit = {}) =>
  new Request('http://example.com/ws', { headers, ...init })
const noop: Controller = { serve() {} }

describe('validateHandshake', () => {
  it('accepts a valid handshake', () => expect(validateHandshake(request(valid))).toBeUndefined())
  it.each([
    ['no Upgrade', { ...valid, Upgrade: '' }, 400],
    ['no Connection: Upgrade', { ...valid, Connection: 'keep-alive' }, 400],
    ['a missing version', { ...valid, 'Sec-WebSocket-Version': '' }, 426],
    ['version 8', { ...valid, 'Sec-WebSocket-Version': '8' }, 426],
    ['a short key', { ...valid, 'Sec-WebSocket-Key': 'c2hvcnQ=' }, 400],
    [
      'a key that is not base64',
      { ...valid, 'Sec-WebSocket-Key': '!!!!!!!!!!!!!!!!!!!!!!==' },
      400,
    ],
  ])('answers %s with %i', (_, headers, status) => {
    const { 'Sec-WebSocket-Version': version, ...rest } = headers
    const err = validateHandshake(request(version ? headers : rest))
    expect(err?.status).toBe(version || status !== 426 ? status : 400)
  })
  it('refuses methods other than GET', () => {
    expect(validateHandshake(request(valid, { method: 'POST' }))?.status).toBe(400)
  })
})

describe('isSameOrigin', () => {
  it('passes requests with no Origin', () => expect(isSameOrigin(request(valid))).toBe(true))
  it('passes the same host, in any case', () => {
    expect(
      isSameOrigin(request({ ...valid, Origin: 'https://EXAMPLE.com', Host: 'example.com' })),
    ).toBe(true)
  })
  it('refuses another host, another port and an unparsable origin', () => {
    const host = { ...valid, Host: 'example.com' }
    expect(isSameOrigin(request({ ...host, Origin: 'https://evil.com' }))).toBe(false)
    expect(isSameOrigin(request({ ...host, Origin: 'https://example.com:8443' }))).toBe(false)
    expect(isSameOrigin(request({ ...host, Origin: 'null' }))).toBe(false)
  })
})

describe('chooseSubprotocol', () => {
  it("follows the server's preference", () => {
    expect(chooseSubprotocol('v1, v2', ['v2', 'v1'])).toBe('v2')
  })
  it('chooses none when nothing matches or nothing is offered', () => {
    expect(chooseSubprotocol('v3', ['v2', 'v1'])).toBeUndefined()
    expect(chooseSubprotocol(null, ['v1'])).toBeUndefined()
    expect(chooseSubprotocol('v1', [])).toBeUndefined()
  })
})

describe('Upgrader', () => {
  it('applies defaults and keeps explicit options', () => {
    const upgrader = new Upgrader(noop, { closeHandshakeTimeout: 5, debug: undefined })
    expect(upgrader.controller).toBe(noop)
    expect(upgrader.settings).toMatchObject({
      closeHandshakeTimeout: 5,
      debug: false,
      maxMessageSize: 1024 * 1024,
    })
    expect(Object.isFrozen(upgrader.settings)).toBe(true)
  })

  it('registers GET on the root path without registerRoute', async () => {
    const app = new Hono()
    new Upgrader(noop).registerRoutes(app)
    const mounted = new Hono().route('/ws', app)
    const peer = await connect(mounted, '/ws')
    expect(peer.response.status).toBe(101)
    expect((await mounted.request('/ws', { method: 'POST' })).status).toBe(404)
  })

  it("uses the controller's registerRoute", async () => {
    const app = new Hono()
    new Upgrader({
      serve() {},
      registerRoute(app, handler) {
        app.get('/custom', handler)
      },
    }).registerRoutes(app)
    await expect(connect(app, '/custom')).resolves.toBeDefined()
    await expect(connect(app, '/')).rejects.toBeInstanceOf(UpgradeRejectedError)
  })
})

describe('upgrade errors', () => {
  const app = (controller: ControllerWithHooks = noop, debug = false) =>
    new Hono().get('/', upgrade(controller, { debug, logger: { error: vi.fn() } }))

  it('answers a plain GET with 400 JSON and the version header', async () => {
    const res = await app().request('/')
    expect(res.status).toBe(400)
    expect(res.headers.get('sec-websocket-version')).toBe('13')
    expect(res.headers.get('content-type')).toBe('application/json')
    expect(await res.json()).toEqual({ error: 'Bad Request' })
  })

  it('puts the reason in the body under debug', async () => {
    const res = await app(noop, true).request('/', {
      headers: { ...valid, 'Sec-WebSocket-Version': '8' },
    })
    expect(res.status).toBe(426)
    expect(await res.json()).toEqual({
      error: 'Unsupported WebSocket version "8": only 13 is supported',
    })
  })

  it('lets onUpgradeError answer, and still adds the version header', async () => {
    const onUpgradeError = vi.fn((_c, status: number, reason: Error) =>
      Response.json({ custom: reason.message }, { status }),
    )
    const res = await app({ serve() {}, onUpgradeError }).request('/')
    expect(res.status).toBe(400)
    expect(res.headers.get('sec-websocket-version')).toBe('13')
    expect(await res.json()).toEqual({ custom: expect.stringContaining('Upgrade header') })
  })

  it('lets checkOrigin accept a foreign origin, and refuse a same one', async () => {
    const open = { serve() {}, checkOrigin: () => true }
    await expect(
      connect(open, '/', { headers: { Origin: 'https://elsewhere.test' } }),
    ).resolves.toBeDefined()
    const closed = { serve() {}, checkOrigin: async () => false }
    const err = await connect(closed).catch((e: UpgradeRejectedError) => e)
    expect((err as UpgradeRejectedError).response.status).toBe(403)
  })

  it('answers 500 naming the adapter packages when no adapter is installed', async () => {
    const logger = { error: vi.fn() }
    const res = await new Hono()
      .get('/', upgrade(noop, { logger, debug: true }))
      .request('/', { headers: valid })
    expect(res.status).toBe(500)
    const body = (await res.json()) as { error: string }
    expect(body.error).toMatch(/@handshake\/node/)
    expect(logger.error).toHaveBeenCalledOnce()
  })

  it('answers 500 when a hook throws, and the adapter is never called', async () => {
    const hub = createHub()
    const adapter: Adapter = { name: 'spy', upgrade: vi.fn(), hub: () => hub }
    const logger = { error: vi.fn() }
    const controller = {
      serve() {},
      upgradeHeaders(): HeadersInit {
        throw new Error('no headers today')
      },
    }
    const res = await new Hono()
      .get('/', upgrade(controller, { logger }))
      .request('/', { headers: valid }, { [ADAPTER]: adapter })
    expect(res.status).toBe(500)
    expect(await res.json()).toEqual({ error: 'Internal Server Error' })
    expect(adapter.upgrade).not.toHaveBeenCalled()
  })

  it('adds upgradeHeaders and the chosen protocol to the 101', async () => {
    const controller = { serve() {}, upgradeHeaders: () => ({ 'X-Room': 'lobby' }) }
    const app = new Hono().get('/', upgrade(controller, { subprotocols: ['v2', 'v1'] }))
    const peer = await connect(app, '/', { protocols: ['v1', 'v2'] })
    expect(peer.response.headers.get('x-room')).toBe('lobby')
    expect(peer.response.headers.get('sec-websocket-protocol')).toBe('v2')
    expect(peer.protocol).toBe('v2')
  })

  it('works behind middleware that copies the response, and shows its headers on the 101', async () => {
    const app = new Hono()
    app.use(secureHeaders())
    app.get('/', upgrade(noop))
    const peer = await connect(app)
    expect(peer.response.status).toBe(101)
    expect(peer.response.headers.get('x-content-type-options')).toBe('nosniff')
  })
})

describe('findUpgrader(): the route of a woken socket, however Hono composed it (issue 18 #17)', () => {
  const controller = { message() {} }

  it('sees through app.route() of a sub-app with its own onError', () => {
    const upgrader = new Upgrader(controller)
    const sub = new Hono().onError((err, c) => c.text(err.message, 500))
    sub.get('/ws', upgrader.handler())
    const app = new Hono().route('/rooms', sub)
    expect(findUpgrader(app, 'http://localhost/rooms/ws')).toBe(upgrader)
  })

  it('finds it under basePath() and behind middleware, running none of it', () => {
    const based = new Upgrader(controller)
    const guarded = new Upgrader(controller)
    const middleware = vi.fn(async (_c: unknown, next: () => Promise<void>) => next())
    const app = new Hono()
    app.basePath('/api').get('/ws', based.handler())
    app.use('/guarded/*', middleware)
    app.get('/guarded/ws', middleware, guarded.handler())
    expect(findUpgrader(app, 'http://localhost/api/ws')).toBe(based)
    expect(findUpgrader(app, 'http://localhost/guarded/ws?x=1')).toBe(guarded)
    expect(middleware).not.toHaveBeenCalled()
  })

  it('reaches a sub-app mounted with mount() through one marked GET that upgrades nothing', () => {
    const mounted = new Upgrader(controller)
    const sub = new Hono().get('/ws', mounted.handler())
    const app = new Hono()
    app.mount('/mounted', sub.fetch)
    app.all('/helper/*', mount(sub.fetch))
    expect(findUpgrader(app, 'http://localhost/mounted/ws')).toBe(mounted)
    expect(findUpgrader(app, 'http://localhost/helper/ws')).toBe(mounted)
  })

  it('finds nothing for a route without upgrade()', () => {
    const app = new Hono().get('/plain', (c) => c.text('plain'))
    expect(findUpgrader(app, 'http://localhost/plain')).toBeUndefined()
    expect(findUpgrader(app, 'http://localhost/missing')).toBeUndefined()
  })
})

// Live memory needs a collection first.
setFlagsFromString('--expose-gc')
const collect = runInNewContext('gc') as () => void
const turn = () => new Promise((resolve) => setTimeout(resolve, 0))

describe('what an idle serve connection keeps of its upgrade (issue 23)', () => {
  const app = (controller: ControllerWithHooks, seen: (c: Context) => void) => {
    const hono = new Hono()
    hono.use(async (c, next) => {
      seen(c)
      await next()
    })
    return hono.get('/', upgrade(controller))
  }

  // It failed before: the chain on serve's promise kept `c` (Hono's Context, the request, the
  // 101's response) for the connection's life, for an onError the controller does not have.
  it('lets the context go when serve does not keep it and there is no onError', async () => {
    let context: WeakRef<Context> | undefined
    const controller: Controller = {
      async serve(conn) {
        for await (const msg of conn) await conn.send(msg.data)
      },
    }
    const peer = await connect(
      app(controller, (c) => {
        context = new WeakRef(c)
      }),
    )
    peer.send('a')
    expect((await peer.read()).data).toBe('a')
    for (let i = 0; i < 3 && context?.deref(); i++) {
      await turn()
      collect()
    }
    expect(context?.deref()).toBeUndefined()
    peer.close(1000)
    await peer.closed
  })

  it('keeps it for onError, which gets the upgrade context itself', async () => {
    let upgradeContext: Context | undefined
    const got: [Context, string | undefined][] = []
    const controller: ControllerWithHooks = {
      async serve(conn) {
        await conn.read()
        throw new Error('boom')
      },
      onError(c) {
        got.push([c, c.req.header('x-name')])
      },
    }
    const peer = await connect(
      app(controller, (c) => {
        upgradeContext = c
      }),
      '/',
      { headers: { 'x-name': 'ada' } },
    )
    await turn()
    collect()
    peer.send('a')
    expect((await peer.closed).code).toBe(1011)
    expect(got).toEqual([[upgradeContext, 'ada']])
  })

  // The README's rule: the context is kept for `onError` as the controller has it when `serve`
  // starts. Nothing in the test holds `c` here, so only the upgrader can keep it alive.
  it("gives onError the upgrade's headers and middleware variables after a collection", async () => {
    const got: [string | undefined, unknown][] = []
    const controller: ControllerWithHooks = {
      async serve(conn) {
        await conn.read()
        throw new Error('boom')
      },
      onError(c) {
        got.push([c.req.header('x-name'), c.get('user' as never)])
      },
    }
    const peer = await connect(hono().get('/', upgrade(controller)), '/', {
      headers: { 'x-name': 'ada' },
    })
    for (let i = 0; i < 3; i++) {
      await turn()
      collect()
    }
    peer.send('a')
    expect((await peer.closed).code).toBe(1011)
    expect(got).toEqual([['ada', 'ada']])
  })

  // Documented, deliberate (issue 23): an onError the controller gains once serve has started
  // was not there to keep the context for, so it gets the one rebuilt from conn.url, as an event
  // controller's onError after open.
  it('gives an onError added after serve started the context rebuilt from the URL', async () => {
    let started: () => void = () => {}
    const running = new Promise<void>((resolve) => {
      started = resolve
    })
    const got: unknown[] = []
    const controller: ControllerWithHooks = {
      async serve(conn) {
        started()
        await conn.read()
        throw new Error('boom')
      },
    }
    const peer = await connect(hono().get('/ws', upgrade(controller)), '/ws?room=1', {
      headers: { 'x-name': 'ada' },
    })
    await running
    controller.onError = (c) => {
      got.push(c.req.url, c.req.query('room'), c.get('user' as never))
      got.push(() => c.req.header('x-name'))
    }
    peer.send('a')
    expect((await peer.closed).code).toBe(1011)
    expect(got.slice(0, 3)).toEqual(['http://localhost/ws?room=1', '1', undefined])
    expect(got[3]).toThrow(/headers are gone/)
  })
})

/** An app whose middleware sets a variable, as an app's auth would. */
const hono = () => {
  const app = new Hono()
  app.use(async (c, next) => {
    c.set('user' as never, 'ada' as never)
    await next()
  })
  return app
}
