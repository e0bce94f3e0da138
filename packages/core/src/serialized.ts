/**
 * The size of a value in workerd's own serialization: V8's structured-clone wire format
 * (`ValueSerializer`, format version 15), the format a Durable Object's socket attachment is
 * stored in and measured by. Written in plain TypeScript, so that the budgets of `conn.data`
 * and of an attachment are the same on every runtime, and fail locally as they do on workerd.
 * @module
 */

import type { ConnSnapshot } from './port.js'

/** The most bytes workerd stores per socket (`serializeAttachment`), in its own serialization. */
export const MAX_ATTACHMENT_BYTES = 16 * 1024

/**
 * V8's small integers on a 64-bit build with pointer compression, as workerd runs it: written
 * as a varint; any other number is written as 8 bytes.
 */
const SMI_MIN = -(2 ** 30)
const SMI_MAX = 2 ** 30 - 1
/** The largest array index (2^32 - 2): an own key of this form is written as a number. */
const MAX_ARRAY_INDEX = 2 ** 32 - 2
/** The format's header: the version tag and the version (15). */
const HEADER_BYTES = 2

const varintBytes = (value: number): number => {
  let bytes = 1
  while (value >= 0x80) {
    value = Math.floor(value / 0x80)
    bytes++
  }
  return bytes
}

const isSmi = (value: number): boolean =>
  Number.isInteger(value) && value >= SMI_MIN && value <= SMI_MAX && !Object.is(value, -0)

/** `zigzag(value)` as V8 writes a small integer. */
const smiBytes = (value: number): number => 1 + varintBytes(value < 0 ? -2 * value - 1 : 2 * value)

/** A one-byte string holds only Latin-1 characters; V8 writes any other as UTF-16. */
const isOneByte = (value: string): boolean => {
  for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) > 0xff) return false
  return true
}

/** The canonical array index `key` stands for, or -1. */
const arrayIndexOf = (key: string): number => {
  if (key === '' || key.length > 10 || (key.length > 1 && key[0] === '0')) return -1
  for (let i = 0; i < key.length; i++) {
    const code = key.charCodeAt(i)
    if (code < 0x30 || code > 0x39) return -1
  }
  const index = Number(key)
  return index <= MAX_ARRAY_INDEX ? index : -1
}

const TYPED_ARRAY = Object.getPrototypeOf(Uint8Array) as abstract new () => object

/**
 * Where a value cannot be cloned: refused by the structured-clone algorithm (a function, a
 * symbol, a `WeakMap`, a platform object such as a `Request`).
 */
export class UncloneableError extends RangeError {
  override readonly name = 'RangeError'
  /**
   * @param path - where the value sits, from the root (`data.handlers[0]`)
   * @param what - what it is
   */
  constructor(
    readonly path: string,
    readonly what: string,
  ) {
    super(`${path} is ${what}, which cannot be cloned`)
  }
}

/** Walks a value once, counting the bytes V8's serializer writes for it. */
class Measure {
  bytes = HEADER_BYTES
  readonly #ids = new Map<object, number>()

  string(value: string): void {
    if (isOneByte(value)) {
      this.bytes += 1 + varintBytes(value.length) + value.length
      return
    }
    const byteLength = value.length * 2
    // V8 aligns the UTF-16 bytes on an even offset with a padding tag.
    if ((this.bytes + 1 + varintBytes(byteLength)) & 1) this.bytes++
    this.bytes += 1 + varintBytes(byteLength) + byteLength
  }

  number(value: number): void {
    this.bytes += isSmi(value) ? smiBytes(value) : 9
  }

  bigint(value: bigint): void {
    let digits = 0
    for (let rest = value < 0n ? -value : value; rest > 0n; rest >>= 64n) digits++
    // After its tag: a bitfield (sign, byte length), then 64-bit digits.
    this.bytes += varintBytes(digits * 16) + digits * 8
  }

  /** An own key: a number when it is an array index, else a string. */
  key(key: string): void {
    const index = arrayIndexOf(key)
    if (index >= 0) this.number(index)
    else this.string(key)
  }

  value(value: unknown, path: string): void {
    switch (typeof value) {
      case 'undefined':
      case 'boolean':
        this.bytes += 1
        return
      case 'number':
        this.number(value)
        return
      case 'bigint':
        this.bytes += 1
        this.bigint(value)
        return
      case 'string':
        this.string(value)
        return
      case 'function':
        throw new UncloneableError(path, 'a function')
      case 'symbol':
        throw new UncloneableError(path, 'a symbol')
    }
    if (value === null) {
      this.bytes += 1
      return
    }
    this.object(value as object, path)
  }

  object(value: object, path: string): void {
    const id = this.#ids.get(value)
    if (id !== undefined) {
      this.bytes += 1 + varintBytes(id)
      return
    }
    if (ArrayBuffer.isView(value)) {
      this.view(value, path)
      return
    }
    this.#ids.set(value, this.#ids.size)
    if (Array.isArray(value)) {
      this.array(value, path)
      return
    }
    const tag = Object.prototype.toString.call(value).slice(8, -1)
    switch (tag) {
      case 'Object':
        this.bytes += 1
        this.properties(value, Object.keys(value), path)
        this.bytes += 1 + varintBytes(Object.keys(value).length)
        return
      case 'Date':
        this.bytes += 9
        return
      case 'RegExp': {
        const regexp = value as RegExp
        this.bytes += 1
        this.string(regexp.source)
        // One bit per flag (g i m l y u s d v): `d` and `v` take a second byte.
        this.bytes += regexp.hasIndices || regexp.flags.includes('v') ? 2 : 1
        return
      }
      case 'Map': {
        let i = 0
        this.bytes += 1
        for (const [key, entry] of value as Map<unknown, unknown>) {
          this.value(key, `${path}.keys()[${i}]`)
          this.value(entry, `${path}.get(${describeKey(key)})`)
          i++
        }
        this.bytes += 1 + varintBytes(2 * i)
        return
      }
      case 'Set': {
        let i = 0
        this.bytes += 1
        for (const entry of value as Set<unknown>) {
          this.value(entry, `${path}.values()[${i}]`)
          i++
        }
        this.bytes += 1 + varintBytes(i)
        return
      }
      case 'ArrayBuffer':
        this.buffer(value as ArrayBuffer)
        return
      case 'Boolean':
        this.bytes += 1
        return
      case 'Number':
        this.bytes += 9
        return
      case 'BigInt':
        this.bytes += 1
        this.bigint((value as { valueOf(): bigint }).valueOf())
        return
      case 'String':
        this.bytes += 1
        this.string((value as { valueOf(): string }).valueOf())
        return
      case 'Error':
        // workerd stores an Error with every own property, in a layout of its own that no
        // other runtime shares: refused everywhere, so that no runtime accepts what another
        // measures otherwise.
        throw new UncloneableError(path, 'an Error (store its message)')
    }
    throw new UncloneableError(path, `a ${tag}`)
  }

  buffer(value: ArrayBuffer): void {
    this.bytes += 1 + varintBytes(value.byteLength) + value.byteLength
  }

  /** A typed array or DataView: its whole buffer first (once), then the view. */
  view(value: ArrayBufferView, path: string): void {
    if (!((value as object) instanceof TYPED_ARRAY) && !(value instanceof DataView)) {
      throw new UncloneableError(path, 'an unknown ArrayBuffer view')
    }
    const buffer = value.buffer as ArrayBuffer
    if (!this.#ids.has(buffer)) {
      this.#ids.set(buffer, this.#ids.size)
      this.buffer(buffer)
    }
    this.#ids.set(value, this.#ids.size)
    // Tag, subtag, offset, length, flags.
    this.bytes += 2 + varintBytes(value.byteOffset) + varintBytes(value.byteLength) + 1
  }

  /** Dense when it has no holes (V8 writes a holey array as a sparse one). */
  array(value: readonly unknown[], path: string): void {
    const keys = Object.keys(value)
    let holes = value.length
    for (const key of keys) if (arrayIndexOf(key) >= 0) holes--
    const extra = keys.filter((key) => arrayIndexOf(key) < 0)
    this.bytes += 1 + varintBytes(value.length)
    if (holes === 0) {
      // A packed array of numbers with one that is not a small integer is stored, and written,
      // as doubles.
      const doubles =
        value.length > 0 &&
        value.every((item) => typeof item === 'number') &&
        value.some((item) => !isSmi(item as number))
      for (let i = 0; i < value.length; i++) {
        if (doubles) this.bytes += 9
        else this.value(value[i], `${path}[${i}]`)
      }
      this.properties(value, extra, path)
      this.bytes += 1 + varintBytes(extra.length) + varintBytes(value.length)
      return
    }
    this.properties(value, keys, path)
    this.bytes += 1 + varintBytes(keys.length) + varintBytes(value.length)
  }

  properties(value: object, keys: readonly string[], path: string): void {
    for (const key of keys) {
      this.key(key)
      this.value((value as Record<string, unknown>)[key], `${path}${describeProperty(key)}`)
    }
  }
}

const describeProperty = (key: string): string =>
  /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`

const describeKey = (key: unknown): string =>
  typeof key === 'string' ? JSON.stringify(key) : String(key)

/**
 * The bytes of `value` in workerd's own serialization (V8's structured-clone format, header
 * included): what `ws.serializeAttachment(value)` stores and checks against 16 KiB. It follows
 * V8's rules: a string with a character past U+00FF takes two bytes per character, an integer
 * from -2^30 to 2^30 - 1 a varint, any other number 8 bytes, `undefined` is kept, a `Map`, a
 * `Set`, a `Date` or bytes are kept as such.
 *
 * The count is exact for values built from literals, `JSON.parse` and ordinary arithmetic.
 * V8 can hold the same value in another representation (an integer kept as a double in a
 * field that held fractions, a Latin-1 slice of a wider string), which it writes a little
 * longer; leave some margin under a budget.
 * @param value - the value to measure
 * @param path - how to name the value in an error, `value` by default
 * @throws RangeError (an {@link UncloneableError}) when the value holds something that cannot be
 *   stored alike everywhere: a function, a symbol, a `WeakMap`, a `Promise`, a platform object
 *   (which workerd refuses too), or an `Error` (which workerd stores in a layout of its own)
 */
export function serializedSize(value: unknown, path = 'value'): number {
  const measure = new Measure()
  measure.value(value, path)
  return measure.bytes
}

/**
 * Checks what a hibernatable socket stores (its attachment: the connection's snapshot, and
 * whatever the adapter adds) against workerd's budget of {@link MAX_ATTACHMENT_BYTES}, measured
 * as workerd measures it, so that the documented error comes before workerd's own.
 * @param attachment - exactly what will be stored: the snapshot, with the adapter's own fields
 * @throws RangeError when it is over the budget, with its size and what to change
 */
export function assertAttachmentFits(attachment: ConnSnapshot): void {
  const bytes = serializedSize(attachment, 'the attachment')
  if (bytes > MAX_ATTACHMENT_BYTES) {
    throw new RangeError(
      `The connection's state takes ${bytes} bytes in workerd's serialization, with its URL and ${attachment.topics.length} topics; a socket stores at most ${MAX_ATTACHMENT_BYTES}: use fewer or shorter topics (a character past U+00FF takes two bytes), or a shorter URL`,
    )
  }
}
