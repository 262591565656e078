/** Splits a text stream into lines; a final line without a newline is delivered by flush(). */
export class LineSplitter {
  #pending = '';
  readonly #onLine: (line: string) => void;

  constructor(onLine: (line: string) => void) {
    this.#onLine = onLine;
  }

  push(text: string): void {
    const parts = (this.#pending + text).split('\n');
    this.#pending = parts.pop() ?? '';
    for (const part of parts) this.#onLine(part.endsWith('\r') ? part.slice(0, -1) : part);
  }

  flush(): void {
    if (this.#pending !== '') this.#onLine(this.#pending);
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
