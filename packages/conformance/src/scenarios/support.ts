/**
 * What every scenario file shares: connection ids, waiting for the server's report, reading
 * messages of a known type.
 * @module
 */
import { expect } from 'vitest'
import type { ServerReport } from '../app.js'
import type { ControlledPeer, Peer, PeerClose } from '../peers.js'
import type { Harness } from '../targets.js'

/** Gives the scenarios the harness once `beforeAll` has made it. */
export type HarnessRef = () => Harness

let counter = 0

/** A fresh connection id, for `?id=` and `GET /report/:id`. */
export function newId(label: string): string {
  counter++
  return `${label}-${counter}-${Math.random().toString(36).slice(2, 10)}`
}

/** `path?id=<id>` (or `&id=` when the path has a query already). */
export function withId(path: string, id: string): string {
  return `${path}${path.includes('?') ? '&' : '?'}id=${encodeURIComponent(id)}`
}

/**
 * Polls the server's report until `ready` holds, and returns it. Fails the test with the last
 * report when it does not within `timeoutMs`.
 */
export async function waitForReport(
  h: Harness,
  id: string,
  ready: (report: ServerReport) => boolean,
  timeoutMs = 8000,
): Promise<ServerReport> {
  const deadline = Date.now() + timeoutMs
  let last: ServerReport | undefined
  for (;;) {
    last = await h.report(id)
    if (last && ready(last)) return last
    if (Date.now() > deadline) {
      throw new Error(`The server's report for ${id} never got ready: ${JSON.stringify(last)}`)
    }
    await sleep(25)
  }
}

/** Waits until the server saw the connection end, and returns its report. */
export function waitForReadError(h: Harness, id: string): Promise<ServerReport> {
  return waitForReport(h, id, (report) => report.readError !== undefined)
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Reads the next message and checks that it is this text. */
export async function expectText(peer: Peer, text: string): Promise<void> {
  expect(await peer.read()).toEqual({ type: 'text', data: text })
}

/** Reads the next message, which must be text, and returns it. */
export async function readText(peer: Peer): Promise<string> {
  const message = await peer.read()
  if (message.type !== 'text') throw new Error(`Expected a text message, got ${message.type}`)
  return message.data
}

/** Reads the next message, which must be binary, and returns its bytes. */
export async function readBinary(peer: Peer): Promise<Uint8Array> {
  const message = await peer.read()
  if (message.type !== 'binary') throw new Error(`Expected a binary message, got ${message.type}`)
  return message.data
}

/** Sends a message and expects it back, proving the connection still works. */
export async function expectEcho(peer: Peer, text = 'still there?'): Promise<void> {
  peer.send(text)
  await expectText(peer, text)
}

/** Waits for the end of a connection, failing the test if it does not end within `timeoutMs`. */
export async function closedWithin(peer: Peer, timeoutMs = 8000): Promise<PeerClose> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`The connection did not end within ${timeoutMs} ms`)),
      timeoutMs,
    )
  })
  try {
    return await Promise.race([peer.closed, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Bytes 0..n-1, each its index modulo 256, so an offset or a truncation shows. */
export function patternBytes(length: number, seed = 0): Uint8Array {
  const bytes = new Uint8Array(length)
  for (let i = 0; i < length; i++) bytes[i] = (i + seed) & 0xff
  return bytes
}

/** Sends 1 KiB messages until the peer gets a close frame, waiting while its transport is full. */
export async function floodUntilClosed(peer: ControlledPeer): Promise<void> {
  let stopped = false
  void peer.closeFrame.then(() => {
    stopped = true
  })
  void peer.closed.then(() => {
    stopped = true
  })
  const message = patternBytes(1024)
  try {
    while (!stopped) {
      peer.send(message)
      await sleep(0)
      while (peer.bufferedAmount > 64 * 1024 && !stopped) await sleep(5)
    }
  } catch {
    // The connection ended under the flood.
  }
}
