/**
 * `writeResponse`, the port's writer of a web `Response` on a raw connection (Node's answers to
 * upgrade requests that are not upgrades): what is sent with a length and what is streamed.
 */
import { describe, expect, it } from 'vitest'
import { type ByteSink, writeResponse } from '../src/adapter.js'

/** A connection that keeps what is written, one entry per write. */
function recordingSink(): ByteSink & { writes: string[] } {
  const writes: string[] = []
  const text = (bytes: Uint8Array) => new TextDecoder('latin1').decode(bytes)
  return {
    writes,
    destroyed: false,
    write: (bytes) => writes.push(text(bytes)) < 3,
    end: (bytes) => void (bytes && writes.push(text(bytes))),
    destroy() {},
    resume() {},
    on() {},
    once() {},
    off() {},
  }
}

/** A body that makes one byte per call of `tick`, for ever. */
function dripping(tick: (fn: () => void) => void): ReadableStream<Uint8Array> {
  return new ReadableStream({
    pull: (controller) =>
      new Promise<void>((resolve) =>
        tick(() => {
          controller.enqueue(new Uint8Array([0x2e]))
          resolve()
        }),
      ),
  })
}

async function firstWrite(sink: { writes: string[] }): Promise<string> {
  const started = performance.now()
  while (sink.writes.length === 0 && performance.now() - started < 5000) {
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
  return sink.writes[0] ?? ''
}

describe('writeResponse: a length for what is ready at once, chunks for the rest', () => {
  it('sends a body that is ready at once with its length', async () => {
    const sink = recordingSink()
    await writeResponse(sink, new Response('{"error":"Forbidden"}', { status: 403 }), 'GET')
    expect(sink.writes).toHaveLength(1)
    expect(sink.writes[0]).toMatch(/^HTTP\/1\.1 403 \r\n/)
    expect(sink.writes[0]).toMatch(/\r\ncontent-length: 21\r\n/)
  })

  // It failed before: the read-ahead raced each chunk against a 1 ms timer of its own, so a
  // body producing a byte per turn of the event loop was read ahead for as many turns as fit in
  // a millisecond (46 bytes here, more on a faster machine) before anything was sent.
  it('streams a body produced a turn of the event loop at a time from its first byte', async () => {
    const sink = recordingSink()
    void writeResponse(sink, new Response(dripping(setImmediate)), 'GET')
    const head = await firstWrite(sink)
    expect(head).toMatch(/\r\ntransfer-encoding: chunked\r\n/)
    // At most the chunk made in the turn the response was written in.
    expect(head.split('\r\n1\r\n.\r\n').length - 1).toBeLessThanOrEqual(1)
  })

  it('streams a body produced a timer at a time', async () => {
    const sink = recordingSink()
    void writeResponse(sink, new Response(dripping((fn) => setTimeout(fn, 0))), 'GET')
    const head = await firstWrite(sink)
    expect(head).toMatch(/\r\ntransfer-encoding: chunked\r\n/)
    expect(head.split('\r\n1\r\n.\r\n').length - 1).toBeLessThanOrEqual(1)
  })
})
