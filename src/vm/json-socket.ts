import { createConnection, type Socket } from 'node:net';
import { KibError } from '../core/errors.js';

/** Connects to a unix socket, retrying while it does not exist yet or refuses (QEMU still starting). */
export async function connectUnixSocket(path: string, timeoutMs: number, signal?: AbortSignal): Promise<Socket> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await connectOnce(path, Math.max(1, deadline - Date.now()));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const retryable = code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'EAGAIN';
      if (!retryable || Date.now() >= deadline || signal?.aborted === true) {
        throw new KibError('SOCKET_CONNECT', `could not connect to ${path}: ${(error as Error).message}`, { cause: error });
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

function connectOnce(path: string, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(Object.assign(new Error(`connect timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    });
  });
}

/** Splits a byte stream into newline-terminated JSON messages; lines that do not parse are dropped. */
export class JsonLineReader {
  #buffer: Buffer = Buffer.alloc(0);
  readonly #onMessage: (message: Record<string, unknown>) => void;

  constructor(onMessage: (message: Record<string, unknown>) => void) {
    this.#onMessage = onMessage;
  }

  reset(): void {
    this.#buffer = Buffer.alloc(0);
  }

  push(chunk: Buffer): void {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    for (;;) {
      const newline = this.#buffer.indexOf(0x0a);
      if (newline < 0) break;
      const line = this.#buffer.subarray(0, newline).toString('utf8').trim();
      this.#buffer = this.#buffer.subarray(newline + 1);
      if (line === '') continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        continue;
      }
      if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
        this.#onMessage(parsed as Record<string, unknown>);
      }
    }
  }
}
