/**
 * Driving a server that runs in a child process (Bun, Deno): one JSON line per command on its
 * stdin, one JSON line per answer on its stdout. The suite needs it for what HTTP cannot do: start
 * the server's shutdown, and read reports once the server no longer listens. It imports nothing
 * runtime-specific, so the child runs the same file.
 * @module
 */
import type { ShutdownOptions } from '@handshake/core'
import { findReport, type ServerReport } from './app.ts'

/** A command on the child's stdin. */
export type ControlCommand =
  | { control: number; shutdown: ShutdownOptions }
  | { control: number; report: string }

/** The child's answer on its stdout, tagged with the command's number. */
export interface ControlAnswer {
  control: number
  /** The report asked for; `null` when there is none. */
  report?: ServerReport | null
  /** The error the command failed with. */
  error?: { name: string; message: string }
}

/**
 * The child's side: answers one line of its stdin, or returns undefined for a line that is
 * not a command.
 * @param line - the line read
 * @param shutdown - the server's own graceful shutdown
 * @returns the answer, to print as one line
 */
export async function answerControl(
  line: string,
  shutdown: (options: ShutdownOptions) => Promise<void>,
): Promise<string | undefined> {
  let command: ControlCommand
  try {
    command = JSON.parse(line) as ControlCommand
  } catch {
    return undefined
  }
  if (typeof command?.control !== 'number') return undefined
  const answer: ControlAnswer = { control: command.control }
  try {
    if ('shutdown' in command) await shutdown(command.shutdown)
    else answer.report = findReport(command.report) ?? null
  } catch (err) {
    const { name, message } = err as Error
    answer.error = { name, message }
  }
  return JSON.stringify(answer)
}

/** The test's side: sends commands to a child and matches its answers. */
export class ChildControl {
  readonly #write: (line: string) => void
  readonly #waiting = new Map<number, (answer: ControlAnswer) => void>()
  #next = 0

  /** @param write - writes one line to the child's stdin */
  constructor(write: (line: string) => void) {
    this.#write = write
  }

  /** Give it every line the child prints: it picks the answers out. */
  receive(line: string): void {
    let answer: ControlAnswer
    try {
      answer = JSON.parse(line) as ControlAnswer
    } catch {
      return
    }
    if (typeof answer?.control !== 'number') return
    this.#waiting.get(answer.control)?.(answer)
    this.#waiting.delete(answer.control)
  }

  /** Starts the child server's graceful shutdown, and settles as it does. */
  async shutdown(options: ShutdownOptions = {}): Promise<void> {
    const { error } = await this.#send({ control: this.#next++, shutdown: options })
    if (error) throw errorFromChild(error)
  }

  /** Reads a report in the child, whether or not it still listens. */
  async report(id: string): Promise<ServerReport | undefined> {
    const { report } = await this.#send({ control: this.#next++, report: id })
    return report ?? undefined
  }

  #send(command: ControlCommand): Promise<ControlAnswer> {
    return new Promise((resolve) => {
      this.#waiting.set(command.control, resolve)
      this.#write(`${JSON.stringify(command)}\n`)
    })
  }
}

/**
 * Rebuilds an error a child sent back as `{ name, message }`, so that `toBeInstanceOf(RangeError)`
 * and `rejects.toMatchObject({ name })` hold as they do in process.
 */
export function errorFromChild({ name, message }: { name: string; message: string }): Error {
  const error = name === 'RangeError' ? new RangeError(message) : new Error(message)
  if (error.name !== name) error.name = name
  return error
}
