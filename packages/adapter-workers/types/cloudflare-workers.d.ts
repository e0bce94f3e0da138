/**
 * The part of workerd's built-in `cloudflare:workers` module this package uses, for its own
 * type-checking only. It is not published: an app's Worker types (`wrangler types`, or
 * `@cloudflare/workers-types` in `types`) declare the whole module, and the package's
 * declarations import `DurableObject` from there, so that RPC stubs are typed for the app.
 */
declare module 'cloudflare:workers' {
  import type { DurableObjectState, Rpc } from '@cloudflare/workers-types'

  export abstract class DurableObject<Env = unknown> implements Rpc.DurableObjectBranded {
    [Rpc.__DURABLE_OBJECT_BRAND]: never
    protected ctx: DurableObjectState
    protected env: Env
    constructor(ctx: DurableObjectState, env: Env)
    fetch?(request: Request): Response | Promise<Response>
    webSocketMessage?(ws: WebSocket, message: string | ArrayBuffer): void | Promise<void>
    webSocketClose?(
      ws: WebSocket,
      code: number,
      reason: string,
      wasClean: boolean,
    ): void | Promise<void>
    webSocketError?(ws: WebSocket, error: unknown): void | Promise<void>
  }
}
