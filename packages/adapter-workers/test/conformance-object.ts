/**
 * The conformance app served by one Durable Object, as a WebSocket app on Workers is served
 * once its connections must see each other: the Worker hands every request to the object. A
 * plain Worker's connections belong to the requests that opened them, and no other request may
 * touch them ("Cannot perform I/O on behalf of a different request"); inside an object they are
 * the object's, so one request can close them all with the isolate's registry.
 *
 * `POST /control/shutdown` (the suite's shutdown, options as JSON) runs `connections.shutdown`
 * and answers `{"ok":true}` or `{"error":{"name","message"}}` once it settles.
 * @module
 */
import '../src/index.js'
import type { DurableObjectNamespace, DurableObjectState } from '@cloudflare/workers-types'
import { createConformanceApp } from '@handshake/conformance/app'
import { connections, type ShutdownOptions } from '@handshake/core'

const app = createConformanceApp()

app.post('/control/shutdown', async (c) => {
  try {
    await connections.shutdown(await c.req.json<ShutdownOptions>())
    return c.json({ ok: true })
  } catch (err) {
    const { name, message } = err as Error
    return c.json({ error: { name, message } })
  }
})

/** The object: the whole app, with its state as the Hono execution context. */
export class ConformanceObject {
  constructor(
    readonly ctx: DurableObjectState,
    readonly env: unknown,
  ) {}

  fetch(request: Request): Response | Promise<Response> {
    return app.fetch(request, this.env, this.ctx as never)
  }
}

interface Env {
  CONFORMANCE: DurableObjectNamespace
}

export default {
  fetch(request: Request, env: Env): Promise<Response> {
    const server = env.CONFORMANCE.get(env.CONFORMANCE.idFromName('conformance'))
    return server.fetch(request as never) as unknown as Promise<Response>
  },
}
