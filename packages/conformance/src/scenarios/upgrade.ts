/**
 * SPEC "Behaviour / Upgrade": handshake validation, origins, hooks, subprotocols.
 * @module
 */
import { describe, expect, it } from 'vitest'
import { ALLOWED_ORIGIN, MIDDLEWARE_HEADER, SERVER_SUBPROTOCOLS, UPGRADE_HEADER } from '../app.js'
import { type HttpAnswer, handshakeHeaders } from '../http.js'
import { PeerUpgradeRejected } from '../peers.js'
import {
  expectEcho,
  expectText,
  type HarnessRef,
  newId,
  readText,
  waitForReport,
  withId,
} from './support.js'

/** Checks the default rejection: status, `Sec-WebSocket-Version: 13`, JSON body. */
function expectRejection(answer: HttpAnswer, status: number, error: string | RegExp): void {
  expect(answer.status).toBe(status)
  expect(answer.headers.get('sec-websocket-version')).toBe('13')
  expect(answer.headers.get('content-type')).toMatch(/^application\/json/)
  const body = JSON.parse(answer.body) as { error: unknown }
  expect(Object.keys(body)).toEqual(['error'])
  if (typeof error === 'string') expect(body.error).toBe(error)
  else expect(body.error).toMatch(error)
}

/** Registers the upgrade scenarios. */
export function upgradeScenarios(harness: HarnessRef): void {
  describe('handshake validation', () => {
    it('answers a plain GET with 400, Sec-WebSocket-Version: 13 and {"error":"Bad Request"}', async () => {
      expectRejection(await harness().request('/echo'), 400, 'Bad Request')
    })

    it('answers an Upgrade header that is not websocket with 400', async () => {
      const headers = { ...handshakeHeaders(), Upgrade: 'h2c' }
      expectRejection(await harness().request('/echo', { headers }), 400, 'Bad Request')
    })

    it('answers a bad Sec-WebSocket-Key with 400', async () => {
      const headers = { ...handshakeHeaders(), 'Sec-WebSocket-Key': 'not-a-valid-key' }
      expectRejection(await harness().request('/echo', { headers }), 400, 'Bad Request')
    })

    it('answers a missing Sec-WebSocket-Key with 400', async () => {
      const { 'Sec-WebSocket-Key': _, ...headers } = handshakeHeaders()
      expectRejection(await harness().request('/echo', { headers }), 400, 'Bad Request')
    })

    it('answers an unsupported version with 426', async () => {
      const headers = { ...handshakeHeaders(), 'Sec-WebSocket-Version': '8' }
      expectRejection(await harness().request('/echo', { headers }), 426, 'Upgrade Required')
    })

    it('puts the reason in the body when debug is on', async () => {
      const headers = { ...handshakeHeaders(), 'Sec-WebSocket-Key': 'not-a-valid-key' }
      expectRejection(await harness().request('/debug', { headers }), 400, /Sec-WebSocket-Key/)
    })

    it('keeps serving after rejections', async () => {
      const h = harness()
      await h.request('/echo')
      await h.request('/echo', { headers: { ...handshakeHeaders(), 'Sec-WebSocket-Version': '7' } })
      await expectEcho(await h.dial(withId('/echo', newId('after-rejections'))))
    })
  })

  describe('origin', () => {
    it('refuses a foreign Origin with 403 by default', async () => {
      const headers = { ...handshakeHeaders(), Origin: 'http://evil.example' }
      expectRejection(await harness().request('/echo', { headers }), 403, 'Forbidden')
    })

    it('refuses it to a client library with the whole answer: status, headers, JSON body', async () => {
      const error = await harness()
        .dial('/echo', { headers: { Origin: 'http://evil.example' } })
        .catch((err: unknown) => err)
      expect(error).toBeInstanceOf(PeerUpgradeRejected)
      const rejection = error as PeerUpgradeRejected
      expect(rejection.status).toBe(403)
      expect(rejection.headers.get('sec-websocket-version')).toBe('13')
      expect(JSON.parse(rejection.body)).toEqual({ error: 'Forbidden' })
    })

    it('accepts an Origin whose host is the Host header', async () => {
      const h = harness()
      const peer = await h.dialControlled(withId('/echo', newId('same-origin')), {
        headers: { Origin: `http://${h.host}` },
      })
      await expectEcho(peer)
    })

    it('accepts a request with no Origin (not from a browser page)', async () => {
      await expectEcho(await harness().dialControlled(withId('/echo', newId('no-origin'))))
    })

    it('lets checkOrigin decide: it accepts a foreign origin it allows', async () => {
      const peer = await harness().dialControlled(withId('/custom-origin', newId('allowed')), {
        headers: { Origin: ALLOWED_ORIGIN },
      })
      await expectEcho(peer)
    })

    it('lets checkOrigin decide: it refuses even the same origin when it says no', async () => {
      const h = harness()
      const headers = { ...handshakeHeaders(), Origin: `http://${h.host}` }
      expectRejection(await h.request('/custom-origin', { headers }), 403, 'Forbidden')
      await expect(
        h.dialControlled('/custom-origin', { headers: { Origin: 'http://evil.example' } }),
      ).rejects.toMatchObject({ name: 'PeerUpgradeRejected', status: 403 })
    })
  })

  describe('onUpgradeError', () => {
    it('answers with the controller response, Sec-WebSocket-Version: 13 added', async () => {
      const answer = await harness().request('/custom-upgrade-error')
      expect(answer.status).toBe(400)
      expect(answer.headers.get('sec-websocket-version')).toBe('13')
      expect(answer.headers.get('x-custom-error')).toBe('yes')
      expect(answer.body).toMatch(/^custom 400: /)
    })

    it('gets the 426 too', async () => {
      const headers = { ...handshakeHeaders(), 'Sec-WebSocket-Version': '12' }
      const answer = await harness().request('/custom-upgrade-error', { headers })
      expect(answer.status).toBe(426)
      expect(answer.body).toMatch(/^custom 426: /)
    })
  })

  describe('upgradeHeaders', () => {
    it('adds its headers to the 101 response, or documents that the runtime drops them', async () => {
      const h = harness()
      const peer = await h.dialControlled(withId('/upgrade-headers', newId('upgrade-headers')))
      const value = peer.headers?.get(UPGRADE_HEADER.name) ?? null
      if (h.differences.upgradeHeaders) expect(value).toBe(UPGRADE_HEADER.value)
      else expect(value).toBeNull()
      await expectEcho(peer)
    })

    for (const name of ['Sec-WebSocket-Protocol', 'Sec-WebSocket-Extensions']) {
      it(`refuses ${name} from upgradeHeaders with 500, the log naming the subprotocols option, on every runtime`, async () => {
        // The handshake's own headers come from the core and the runtime only: a subprotocol
        // from upgradeHeaders would be dropped, blanked or passed on, depending on the runtime.
        const h = harness()
        const id = newId('handshake-header')
        const error = await h
          .dialControlled(withId(`/handshake-header?name=${name}`, id), {
            protocols: SERVER_SUBPROTOCOLS,
          })
          .catch((err: unknown) => err)
        expect(error).toBeInstanceOf(PeerUpgradeRejected)
        const rejection = error as PeerUpgradeRejected
        expect(rejection.status).toBe(500)
        expect(JSON.parse(rejection.body)).toEqual({ error: 'Internal Server Error' })
        const report = await waitForReport(h, id, (r) => r.logged.length > 0)
        expect(report.served).toBe(false)
        expect(report.logged.flat().join('\n')).toMatch(
          new RegExp(
            `upgradeHeaders\\(\\) returned ${name.toLowerCase()}.*\`subprotocols\` option`,
          ),
        )
      })
    }
  })

  describe('middleware', () => {
    it('carries headers middleware adds after the handler, or documents that the runtime cannot', async () => {
      const h = harness()
      const peer = await h.dialControlled(withId('/middleware-headers', newId('middleware')))
      const value = peer.headers?.get(MIDDLEWARE_HEADER.name) ?? null
      if (h.differences.middlewareHeaders) expect(value).toBe(MIDDLEWARE_HEADER.value)
      else expect(value).toBeNull()
      await expectEcho(peer)
    })
  })

  describe('subprotocols', () => {
    const cases: [offered: string[], chosen: string][] = [
      [['v1.chat', 'v2.chat'], 'v2.chat'],
      [['v3.chat', 'v1.chat'], 'v1.chat'],
      [['v1.chat'], 'v1.chat'],
    ]
    for (const [offered, chosen] of cases) {
      it(`chooses by the server's preference ${JSON.stringify(SERVER_SUBPROTOCOLS)}: offered ${offered.join(', ')} → ${chosen}`, async () => {
        const peer = await harness().dial(withId('/subprotocols', newId('subprotocol')), {
          protocols: offered,
        })
        expect(peer.protocol).toBe(chosen)
        await expectText(peer, `protocol:${chosen}`)
      })
    }

    it('chooses none when nothing matches, and the upgrade goes on', async () => {
      const peer = await harness().dialControlled(withId('/subprotocols', newId('no-match')), {
        protocols: ['v3.chat', 'mqtt'],
      })
      expect(peer.protocol).toBe('')
      expect(peer.headers?.get('sec-websocket-protocol') ?? null).toBeNull()
      await expectText(peer, 'protocol:')
      await expectEcho(peer)
    })

    it('chooses none when the client offers none', async () => {
      const peer = await harness().dialControlled(withId('/subprotocols', newId('no-offer')))
      expect(peer.protocol).toBe('')
      await expectText(peer, 'protocol:')
    })
  })

  describe('what serve sees', () => {
    it('gets the connection open, its settings, and the upgrade request as a Hono context', async () => {
      const h = harness()
      const id = newId('inspect')
      const peer = await h.dial(`${withId('/inspect', id)}&extra=1`, {
        headers: { 'X-Probe': 'probe-value' },
      })
      const saw = JSON.parse(await readText(peer))
      expect(saw).toEqual({
        protocol: '',
        state: 'open',
        canPing: h.differences.ping,
        closeHandshakeTimeout: 10_000,
        path: '/inspect',
        probeHeader: 'probe-value',
        query: { id, extra: '1' },
        raw: { isRequest: true, method: 'GET', path: '/inspect', cloneProbe: 'probe-value' },
      })
      await expectEcho(peer)
    })
  })
}
