import type { Socket } from 'node:net';
import { KibError } from '../core/errors.js';
import { connectUnixSocket, JsonLineReader } from './json-socket.js';

export interface QmpEvent {
  event: string;
  data: unknown;
  timestamp: { seconds: number; microseconds: number } | undefined;
}

export class QmpError extends KibError {
  readonly command: string;
  readonly errorClass: string;

  constructor(command: string, errorClass: string, description: string) {
    super('QMP_ERROR', `QMP command ${command} failed: ${errorClass}: ${description}`);
    this.command = command;
    this.errorClass = errorClass;
  }
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * A QEMU Machine Protocol client over the VM's QMP unix socket: reads the greeting, negotiates
 * capabilities, then runs commands matched to their responses by id. Events go to listeners.
 */
export class QmpClient {
  readonly #socket: Socket;
  readonly #pending = new Map<number, Pending>();
  readonly #listeners = new Set<(event: QmpEvent) => void>();
  #nextId = 1;
  #greeting: ((greeting: Record<string, unknown>) => void) | undefined;
  #closed = false;
  /** Settles when the connection is gone (QEMU exited, or close() was called). */
  readonly closed: Promise<void>;

  private constructor(socket: Socket) {
    this.#socket = socket;
    const reader = new JsonLineReader((message) => this.#onMessage(message));
    socket.on('data', (chunk: Buffer) => reader.push(chunk));
    socket.on('error', () => {
      // 'close' follows and fails whatever is pending.
    });
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        this.#closed = true;
        for (const [id, pending] of this.#pending) {
          clearTimeout(pending.timer);
          pending.reject(new KibError('QMP_CLOSED', `QMP connection closed before ${pending.command} answered (QEMU exited?)`));
          this.#pending.delete(id);
        }
        resolve();
      });
    });
  }

  static async connect(socketPath: string, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<QmpClient> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const socket = await connectUnixSocket(socketPath, timeoutMs, options.signal);
    const client = new QmpClient(socket);
    try {
      await client.#waitForGreeting(timeoutMs);
      await client.execute('qmp_capabilities', undefined, { timeoutMs });
    } catch (error) {
      client.close();
      throw error;
    }
    return client;
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  async execute<T = unknown>(command: string, args?: Record<string, unknown>, options: { timeoutMs?: number } = {}): Promise<T> {
    if (this.#closed) throw new KibError('QMP_CLOSED', `QMP connection is closed; cannot run ${command}`);
    const id = this.#nextId++;
    const timeoutMs = options.timeoutMs ?? 30_000;
    const result = new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new KibError('QMP_TIMEOUT', `QMP command ${command} got no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { command, resolve, reject, timer });
    });
    this.#socket.write(`${JSON.stringify({ execute: command, ...(args === undefined ? {} : { arguments: args }), id })}\n`);
    return (await result) as T;
  }

  /** Subscribes to asynchronous events (SHUTDOWN, POWERDOWN, …); returns the unsubscribe function. */
  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  close(): void {
    this.#socket.destroy();
  }

  #waitForGreeting(timeoutMs: number): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new KibError('QMP_TIMEOUT', `no QMP greeting within ${timeoutMs} ms`)), timeoutMs);
      this.#greeting = (greeting) => {
        clearTimeout(timer);
        resolve(greeting);
      };
      void this.closed.then(() => {
        clearTimeout(timer);
        reject(new KibError('QMP_CLOSED', 'QMP connection closed before the greeting'));
      });
    });
  }

  #onMessage(message: Record<string, unknown>): void {
    if ('QMP' in message) {
      this.#greeting?.(message);
      this.#greeting = undefined;
      return;
    }
    if (typeof message.event === 'string') {
      const event: QmpEvent = {
        event: message.event,
        data: message.data,
        timestamp: message.timestamp as QmpEvent['timestamp'],
      };
      for (const listener of this.#listeners) listener(event);
      return;
    }
    const id = message.id;
    if (typeof id !== 'number') return;
    const pending = this.#pending.get(id);
    if (pending === undefined) return;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    if ('error' in message) {
      const error = message.error as { class?: string; desc?: string } | undefined;
      pending.reject(new QmpError(pending.command, error?.class ?? 'GenericError', error?.desc ?? 'unknown error'));
    } else {
      pending.resolve(message.return);
    }
  }
}
