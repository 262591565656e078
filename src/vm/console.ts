import { open } from 'node:fs/promises';

const TAIL_BYTES = 64 * 1024;

/**
 * The last lines of a serial console log, readable as text: terminal escape sequences (firmware
 * and boot loaders draw with them) and carriage returns are removed.
 */
export async function readConsoleTail(path: string, lines = 40): Promise<string> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch {
    return '';
  }
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, TAIL_BYTES);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    const text = cleanConsoleText(buffer.toString('utf8'));
    const all = text.split('\n');
    // The first line of a partial read is probably cut.
    if (length < size) all.shift();
    while (all.length > 0 && all[all.length - 1]?.trim() === '') all.pop();
    return all.slice(-lines).join('\n');
  } finally {
    await handle.close();
  }
}

export function cleanConsoleText(text: string): string {
  return (
    text
      // CSI sequences (colours, cursor moves, clear screen) and two-byte escapes.
      .replace(/\x1b\[[0-?]*[ -/]*[@-~]/g, '')
      .replace(/\x1b[@-~]/g, '')
      .replace(/\r\n?/g, '\n')
      // Other control characters except tab and newline.
      .replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '')
  );
}

/** Follows a growing log file and hands out complete new lines; for live console output. */
export class FileFollower {
  readonly #path: string;
  readonly #onLine: (line: string) => void;
  #offset = 0;
  #partial = '';
  #timer: NodeJS.Timeout | undefined;
  #reading = false;

  constructor(path: string, onLine: (line: string) => void) {
    this.#path = path;
    this.#onLine = onLine;
  }

  start(intervalMs = 1_000): void {
    this.#timer = setInterval(() => void this.poll(), intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.poll();
    if (this.#partial.trim() !== '') this.#onLine(cleanConsoleText(this.#partial));
    this.#partial = '';
  }

  async poll(): Promise<void> {
    if (this.#reading) return;
    this.#reading = true;
    try {
      const handle = await open(this.#path, 'r').catch(() => undefined);
      if (handle === undefined) return;
      try {
        const { size } = await handle.stat();
        if (size <= this.#offset) return;
        const buffer = Buffer.alloc(Math.min(size - this.#offset, 1024 * 1024));
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, this.#offset);
        this.#offset += bytesRead;
        const parts = (this.#partial + buffer.subarray(0, bytesRead).toString('utf8')).split('\n');
        this.#partial = parts.pop() ?? '';
        for (const part of parts) {
          const line = cleanConsoleText(part);
          if (line.trim() !== '') this.#onLine(line);
        }
      } finally {
        await handle.close();
      }
    } finally {
      this.#reading = false;
    }
  }
}
