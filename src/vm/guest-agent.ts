import type { Socket } from 'node:net';
import { KibError } from '../core/errors.js';
import { connectUnixSocket, JsonLineReader } from './json-socket.js';

/** Commands after which qemu-ga sends nothing back on success. */
const NO_RESPONSE = new Set(['guest-shutdown', 'guest-suspend-disk', 'guest-suspend-ram', 'guest-suspend-hybrid']);
const SENTINEL = 0xff;

export class GuestAgentError extends KibError {
  readonly command: string;
  readonly errorClass: string;

  constructor(command: string, errorClass: string, description: string) {
    super('GUEST_AGENT_ERROR', `guest agent command ${command} failed: ${errorClass}: ${description}`);
    this.command = command;
    this.errorClass = errorClass;
  }
}

/**
 * A qemu-guest-agent client over the host end of the `org.qemu.guest_agent.0` channel.
 * The channel keeps bytes across agent restarts and client timeouts, so before the first command
 * and after any timeout the client resynchronises with `guest-sync-delimited`: it sends 0xFF (the
 * agent resets its parser), then a random id, and drops everything until the agent's 0xFF
 * sentinel and the echo of that id. Commands run one at a time.
 */
export class GuestAgentClient {
  readonly #socketPath: string;
  #socket: Socket | undefined;
  #synced = false;
  #awaitingSentinel = false;
  #queue: Promise<unknown> = Promise.resolve();
  readonly #messages: Record<string, unknown>[] = [];
  #wake: (() => void) | undefined;
  readonly #reader = new JsonLineReader((message) => {
    this.#messages.push(message);
    this.#wake?.();
  });
  #hasAnswered = false;

  constructor(socketPath: string) {
    this.#socketPath = socketPath;
  }

  /** True once the agent has answered at least once (it is installed and running). */
  get hasAnswered(): boolean {
    return this.#hasAnswered;
  }

  /** Runs one command; `undefined` for commands that do not answer (guest-shutdown). */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, options: { timeoutMs?: number } = {}): Promise<T> {
    const next = this.#queue.then(
      () => this.#executeNow(command, args, options.timeoutMs ?? 10_000),
      () => this.#executeNow(command, args, options.timeoutMs ?? 10_000),
    );
    this.#queue = next.catch(() => undefined);
    return next as Promise<T>;
  }

  close(): void {
    this.#socket?.destroy();
    this.#socket = undefined;
    this.#synced = false;
  }

  async #executeNow(command: string, args: Record<string, unknown> | undefined, timeoutMs: number): Promise<unknown> {
    const deadline = Date.now() + timeoutMs;
    const socket = await this.#connect(deadline);
    if (!this.#synced) await this.#sync(socket, deadline, command);
    socket.write(`${JSON.stringify({ execute: command, ...(args === undefined ? {} : { arguments: args }) })}\n`);
    if (NO_RESPONSE.has(command)) {
      this.#synced = false;
      return undefined;
    }
    const message = await this.#nextMessage(deadline, command);
    if ('error' in message) {
      const error = message.error as { class?: string; desc?: string } | undefined;
      throw new GuestAgentError(command, error?.class ?? 'GenericError', error?.desc ?? 'unknown error');
    }
    return message.return;
  }

  async #connect(deadline: number): Promise<Socket> {
    if (this.#socket !== undefined && !this.#socket.destroyed) return this.#socket;
    const socket = await connectUnixSocket(this.#socketPath, Math.max(1, deadline - Date.now()));
    this.#socket = socket;
    this.#synced = false;
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', () => {
      // 'close' follows.
    });
    socket.on('close', () => {
      if (this.#socket === socket) this.#socket = undefined;
      this.#synced = false;
      this.#wake?.();
    });
    return socket;
  }

  async #sync(socket: Socket, deadline: number, forCommand: string): Promise<void> {
    const id = Math.floor(Math.random() * 0x7fff_ffff);
    this.#messages.length = 0;
    this.#reader.reset();
    this.#awaitingSentinel = true;
    const request = JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id } });
    socket.write(Buffer.concat([Buffer.from([SENTINEL]), Buffer.from(`${request}\n`)]));
    for (;;) {
      const message = await this.#nextMessage(deadline, `${forCommand} (guest-sync-delimited)`);
      if (message.return === id) {
        this.#synced = true;
        this.#hasAnswered = true;
        return;
      }
    }
  }

  #onData(chunk: Buffer): void {
    let data = chunk;
    if (this.#awaitingSentinel) {
      const at = data.indexOf(SENTINEL);
      if (at < 0) return;
      data = data.subarray(at + 1);
      this.#awaitingSentinel = false;
      this.#reader.reset();
    }
    // Every sentinel starts a fresh message; complete lines before it still count.
    for (let at = data.indexOf(SENTINEL); at >= 0; at = data.indexOf(SENTINEL)) {
      this.#reader.push(data.subarray(0, at));
      this.#reader.reset();
      data = data.subarray(at + 1);
    }
    this.#reader.push(data);
  }

  async #nextMessage(deadline: number, command: string): Promise<Record<string, unknown>> {
    for (;;) {
      const message = this.#messages.shift();
      if (message !== undefined) return message;
      if (this.#socket === undefined) {
        throw new KibError('GUEST_AGENT_CLOSED', `guest agent channel closed while waiting for ${command} (QEMU exited?)`);
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        // Whatever answers later belongs to this command; the next call resynchronises first.
        this.#synced = false;
        throw new KibError('GUEST_AGENT_TIMEOUT', `guest agent did not answer ${command} in time`, {
          hint: 'Is qemu-guest-agent installed and running in the guest?',
        });
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.#wake = () => {
          clearTimeout(timer);
          this.#wake = undefined;
          resolve();
        };
      });
    }
  }
}
