/**
 * `handshakeHeadersIfAny`, the port's 101 headers for an adapter that can leave them out: none
 * for an upgrade with no `upgradeHeaders` and no subprotocol, else what `handshakeHeaders` gives.
 */
import { describe, expect, it } from 'vitest'
import { handshakeHeaders, handshakeHeadersIfAny, type UpgradeRequest } from '../src/adapter.js'

/** The part of the core's upgrade request that the 101's headers read. */
const request = (headers: HeadersInit, protocol?: string) =>
  ({ headers: new Headers(headers), protocol }) as UpgradeRequest

describe('handshakeHeadersIfAny', () => {
  it('gives none with no upgradeHeaders and no subprotocol', () => {
    expect(handshakeHeadersIfAny(request({}))).toBeUndefined()
  })

  it("gives handshakeHeaders' list when there is a header or a subprotocol", () => {
    const cases: [UpgradeRequest, string | undefined][] = [
      [request({ 'X-A': '1', 'Set-Cookie': 'a=1' }), undefined],
      [request({}, 'chat'), 'chat'],
      [request({}), ''],
      [request({ 'X-A': '1' }, 'chat'), 'chat'],
    ]
    for (const [req, protocol] of cases) {
      const headers = handshakeHeadersIfAny(req, protocol)
      expect([...(headers ?? [])]).toEqual([...handshakeHeaders(req, protocol)])
      expect(headers?.getSetCookie()).toEqual(handshakeHeaders(req, protocol).getSetCookie())
    }
  })

  it('takes the request protocol by default', () => {
    expect(handshakeHeadersIfAny(request({}, 'chat'))?.get('sec-websocket-protocol')).toBe('chat')
  })
})
