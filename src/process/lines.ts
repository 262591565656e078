/**
 * Splits a text stream into lines at `\n`, `\r\n` and a lone `\r` (progress meters such as
 * qemu-img's `-p` redraw one line with `\r`, so each redraw is delivered as it happens). A `\r`
 * at the end of a chunk waits for the next one, in case it is half of a `\r\n`. A final line
 * without a terminator is delivered by flush().
 */
export class LineSplitter {
  #pending = '';
  readonly #onLine: (line: string) => void;

  constructor(onLine: (line: string) => void) {
    this.#onLine = onLine;
  }

  push(text: string): void {
    const parts = (this.#pending + text).split(/\r\n|\n|\r(?!$)/);
    this.#pending = parts.pop() ?? '';
    for (const part of parts) this.#onLine(part);
  }

  flush(): void {
    const last = this.#pending.endsWith('\r') ? this.#pending.slice(0, -1) : this.#pending;
    if (last !== '') this.#onLine(last);
    this.#pending = '';
  }
}

/** Keeps only the last `maxChars` characters written to it (for stderr tails in errors). */
export class TailBuffer {
  #text = '';
  readonly #maxChars: number;

  constructor(maxChars: number) {
    this.#maxChars = maxChars;
  }

  push(text: string): void {
    this.#text += text;
    if (this.#text.length > this.#maxChars * 2) this.#text = this.#text.slice(-this.#maxChars);
  }

  get text(): string {
    return this.#text.length > this.#maxChars ? this.#text.slice(-this.#maxChars) : this.#text;
  }
}

/** The last `count` non-empty lines of a text. */
export function lastLines(text: string, count: number): string {
  const lines = text.split('\n');
  while (lines.length > 0 && lines[lines.length - 1]?.trim() === '') lines.pop();
  return lines.slice(-count).join('\n');
}
