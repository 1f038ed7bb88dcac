/**
 * The terminal side of `map watch`: the screen it redraws in place (the alternate screen,
 * cursor hidden, each line drawn at its row and cleared to its end; given back as it was on
 * exit), and what ends the watch (`q` or Ctrl-C read from a raw terminal, SIGINT, SIGTERM).
 * On stdout that is not a terminal, frames are printed one after another, without control
 * sequences.
 *
 * @module
 */

const ESC = "\x1b[";
const ENTER = `${ESC}?1049h${ESC}?25l`;
const LEAVE = `${ESC}?25h${ESC}?1049l`;
const encoder = new TextEncoder();

/** Writes all of `text` to stdout. */
function writeAll(text: string): void {
  const bytes = encoder.encode(text);
  for (let done = 0; done < bytes.length;) done += Deno.stdout.writeSync(bytes.subarray(done));
}

/** The size frames are drawn at when stdout is not a terminal: no bound, nothing cut. */
const PLAIN_SIZE = { columns: Infinity, rows: Infinity };
/** The size of a terminal that does not tell it. */
const DEFAULT_SIZE = { columns: 80, rows: 24 };

/**
 * Where frames go: the terminal's alternate screen, or plain lines when stdout is not a
 * terminal. Dispose of it to give the terminal back.
 *
 * @example
 * ```ts
 * import { Screen } from "./_watch_terminal.ts";
 * using screen = new Screen();
 * screen.draw(["hello"]);
 * ```
 */
export class Screen implements Disposable {
  /** Whether stdout is a terminal (frames redrawn in place). */
  readonly terminal: boolean = Deno.stdout.isTerminal();
  #entered = false;

  /** The terminal's size (80 x 24 when it does not say), or no bound when stdout is not one. */
  size(): { columns: number; rows: number } {
    if (!this.terminal) return PLAIN_SIZE;
    try {
      return Deno.consoleSize();
    } catch {
      return DEFAULT_SIZE;
    }
  }

  /** Shows `lines`: over the previous frame on a terminal, else after it with a blank line. */
  draw(lines: readonly string[]): void {
    if (!this.terminal) {
      writeAll(lines.map((line) => line.trimEnd()).join("\n").trimEnd() + "\n\n");
      return;
    }
    let text = this.#entered ? "" : ENTER;
    this.#entered = true;
    lines.forEach((line, row) => text += `${ESC}${row + 1};1H${line}${ESC}K`);
    // Below a frame shorter than the screen, what an earlier (taller) frame left is cleared.
    if (lines.length < this.size().rows) text += `${ESC}${lines.length + 1};1H${ESC}J`;
    writeAll(text);
  }

  /** Leaves the alternate screen and shows the cursor again. Safe to call twice. */
  [Symbol.dispose](): void {
    if (!this.#entered) return;
    this.#entered = false;
    writeAll(LEAVE);
  }
}

/** Ctrl-C as a raw terminal sends it. */
const CTRL_C = 0x03;
const SIGNALS = ["SIGINT", "SIGTERM"] as const;

/**
 * What ends a watch. It listens to SIGINT and SIGTERM and, with `keys` when stdin is a
 * terminal, reads stdin raw for `q`, `Q` or Ctrl-C. `sleep` waits until the next read, or
 * less when the watch is ended meanwhile. Dispose of it (`await using`) to stop listening
 * and give stdin back its mode.
 *
 * @example
 * ```ts
 * import { Quit } from "./_watch_terminal.ts";
 * await using quit = Quit.listen({ keys: true });
 * while (!quit.stopped) await quit.sleep(1000);
 * ```
 */
export class Quit implements AsyncDisposable {
  /** Whether the watch was ended. */
  stopped = false;
  #wake: () => void = () => {};
  readonly #ended: Promise<void>;
  readonly #onSignal = () => this.stop();
  #reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  #reading: Promise<void> | undefined;

  private constructor() {
    this.#ended = new Promise((resolve) => this.#wake = resolve);
  }

  /** Starts listening; `keys` reads `q` and Ctrl-C from stdin when it is a terminal. */
  static listen(options: { keys: boolean }): Quit {
    const quit = new Quit();
    for (const signal of SIGNALS) Deno.addSignalListener(signal, quit.#onSignal);
    if (options.keys && Deno.stdin.isTerminal()) quit.#readKeys();
    return quit;
  }

  #readKeys(): void {
    Deno.stdin.setRaw(true);
    const reader = Deno.stdin.readable.getReader();
    this.#reader = reader;
    this.#reading = (async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        if (value.some((c) => c === 0x71 || c === 0x51 || c === CTRL_C)) return this.stop();
      }
    })().catch(() => this.stop());
  }

  /** Ends the watch: the loop stops at its next check, and a `sleep` returns now. */
  stop(): void {
    this.stopped = true;
    this.#wake();
  }

  /** Waits `ms` milliseconds, or until the watch is ended. */
  async sleep(ms: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      new Promise<void>((resolve) => timer = setTimeout(resolve, Math.max(0, ms))),
      this.#ended,
    ]);
    clearTimeout(timer);
  }

  /** Stops listening and puts stdin back in its mode. */
  async [Symbol.asyncDispose](): Promise<void> {
    for (const signal of SIGNALS) Deno.removeSignalListener(signal, this.#onSignal);
    const reader = this.#reader;
    if (!reader) return;
    this.#reader = undefined;
    await reader.cancel().catch(() => {});
    await this.#reading;
    reader.releaseLock();
    Deno.stdin.setRaw(false);
  }
}
