/**
 * The conformance app served by one Durable Object, as a WebSocket app on Workers is served
 * once its connections must see each other: the Worker hands every request to the object. A
 * plain Worker's connections belong to the requests that opened them, and no other request may
 * touch them ("Cannot perform I/O on behalf of a different request"); inside an object they are
 * the object's, and the object is their hub: one request can close them all with its registry.
 * A second object serves the same app under `/sibling/` (the path is passed on without the
 * prefix): a second hub, for the suite's isolation scenario.
 *
 * `POST /control/shutdown` (the suite's shutdown, options as JSON) runs the hub's
 * `connections.shutdown` and answers `{"ok":true}` or `{"error":{"name","message"}}` once it
 * settles.
 * @module
 */
import '../src/index.js'
import type { DurableObjectNamespace, DurableObjectState } from '@cloudflare/workers-types'
import { createConformanceApp } from '@handshake/conformance/app'
import { getHub, type ShutdownOptions } from '@handshake/core'
import { createHub, HISTORY_STORE, HUB, StoredHistory } from '@handshake/core/adapter'

const app = createConformanceApp()

app.post('/control/shutdown', async (c) => {
  try {
    await getHub(c).connections.shutdown(await c.req.json<ShutdownOptions>())
    return c.json({ ok: true })
  } catch (err) {
    const { name, message } = err as Error
    return c.json({ error: { name, message } })
  }
})

/**
 * The object: the whole app, with its state as the Hono execution context, and a hub of its own
 * in the app's env, whose topics keep their history in the object's storage, as
 * `HandshakeObject` has (whose event controllers hibernate; these do not).
 */
export class ConformanceObject {
  readonly #env: object
  constructor(
    readonly ctx: DurableObjectState,
    env: object,
  ) {
    const hub = createHub()
    hub.topics[HISTORY_STORE] = new StoredHistory(ctx.storage.kv)
    this.#env = Object.create(env, { [HUB]: { value: hub } })
  }

  fetch(request: Request): Response | Promise<Response> {
    return app.fetch(request, this.#env, this.ctx as never)
  }
}

interface Env {
  CONFORMANCE: DurableObjectNamespace
}

export default {
  fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url)
    const sibling = url.pathname.startsWith('/sibling/')
    if (sibling) {
      url.pathname = url.pathname.slice('/sibling'.length)
      request = new Request(url, request)
    }
    const name = sibling ? 'sibling' : 'conformance'
    const server = env.CONFORMANCE.get(env.CONFORMANCE.idFromName(name))
    return server.fetch(request as never) as unknown as Promise<Response>
  },
}
