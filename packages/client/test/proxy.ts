/**
 * A TCP proxy between the client and a server, to cut connections (the client sees 1006), stall
 * them (bytes stop flowing both ways, the TCP connection stays up) and count them.
 * @module
 */
import { connect, createServer, type Server, type Socket } from 'node:net'

/** A running proxy. */
export interface TcpProxy {
  /** `http://127.0.0.1:<port>` */
  readonly url: string
  /** Connections accepted so far. */
  readonly accepted: number
  /** Ends every open connection at once, with no close frame: a reset. */
  cut(): void
  /** Stops forwarding on every open connection; new ones flow. */
  stall(): void
  /** While true, new connections are reset as they arrive. */
  refuse: boolean
  /** Milliseconds each chunk waits before it is forwarded, both ways (order kept). */
  delay: number
  /** Where new connections go (`http://127.0.0.1:N`): set it to move the next ones to another server. */
  target: string
  stop(): Promise<void>
}

/** Starts a proxy on a free port of 127.0.0.1 in front of `target` (`http://127.0.0.1:N`). */
export async function startProxy(target: string): Promise<TcpProxy> {
  /** Pipes `from` into `to`, each chunk after `proxy.delay` ms; stall() stops it. */
  const forward = (from: Socket, to: Socket) => {
    from.on('data', (chunk: Buffer) => {
      if (from.isPaused()) return
      if (proxy.delay > 0) setTimeout(() => to.destroyed || to.write(chunk), proxy.delay)
      else to.write(chunk)
    })
  }
  const pairs = new Set<[Socket, Socket]>()
  let accepted = 0
  const server: Server = createServer((client) => {
    accepted++
    if (proxy.refuse) {
      client.resetAndDestroy()
      return
    }
    const { hostname, port } = new URL(proxy.target)
    const upstream = connect(Number(port), hostname)
    const pair: [Socket, Socket] = [client, upstream]
    pairs.add(pair)
    forward(client, upstream)
    forward(upstream, client)
    const end = () => {
      pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    client.on('error', end).on('close', end)
    upstream.on('error', end).on('close', end)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address() as { port: number }
  const proxy: TcpProxy = {
    url: `http://127.0.0.1:${address.port}`,
    get accepted() {
      return accepted
    },
    refuse: false,
    delay: 0,
    target,
    cut() {
      for (const [client, upstream] of pairs) {
        client.resetAndDestroy()
        upstream.destroy()
      }
      pairs.clear()
    },
    stall() {
      for (const [client, upstream] of pairs) {
        client.pause()
        upstream.pause()
      }
    },
    async stop() {
      proxy.cut()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  return proxy
}
