import { setTimeout as sleep } from 'node:timers/promises';
import { CancelledError, TimeoutError, VmExitedError } from '../core/errors.js';
import type { DaemonExit } from '../process/index.js';

/** The part of a started VM that readiness waits need. */
export interface WatchedVm {
  readonly name: string;
  readonly exited: Promise<DaemonExit>;
  readonly consoleLogPath: string;
  consoleTail(lines?: number): Promise<string>;
}

export interface WaitForReadyOptions<T> {
  /** What we wait for, as the end of "… did not happen": "SSH login on 127.0.0.1:2222". */
  what: string;
  /** When given, the wait fails at once if this VM exits. */
  vm: WatchedVm | undefined;
  /**
   * One readiness check: a value when ready, undefined to try again later. It should stop when
   * its signal fires (the wait is over). A thrown error ends the wait with that error.
   */
  probe: (signal: AbortSignal) => Promise<T | undefined>;
  timeoutMs: number;
  intervalMs?: number;
  signal?: AbortSignal;
  /**
   * Called every `stillWaitingEveryMs` (default 30 s) while the wait goes on, with the time
   * waited, so a slow boot is visibly alive rather than silent. Never called after the wait ends.
   */
  onStillWaiting?: (elapsedMs: number) => void;
  stillWaitingEveryMs?: number;
}

const TAIL_LINES_IN_ERRORS = 25;
const STILL_WAITING_EVERY_MS = 30_000;

/**
 * Polls a readiness probe until it succeeds, racing the VM's exit, a deadline and cancellation.
 * A VM that dies while we wait fails at once with its console tail; a deadline names the console
 * log so the reason can be read there.
 */
export async function waitForReady<T>(options: WaitForReadyOptions<T>): Promise<T> {
  const { vm, signal } = options;
  if (signal?.aborted === true) throw new CancelledError(`Waiting for ${options.what}`);
  const over = new AbortController();
  const attemptSignal = signal === undefined ? over.signal : AbortSignal.any([signal, over.signal]);
  const never = new Promise<never>(() => {});

  const polling = (async (): Promise<{ kind: 'ready'; value: T }> => {
    for (;;) {
      const value = await options.probe(attemptSignal);
      if (value !== undefined) return { kind: 'ready', value };
      await sleep(options.intervalMs ?? 1_000, undefined, { signal: attemptSignal });
    }
  })();
  // Once the race is decided the loop ends by rejecting; nobody needs that error.
  polling.catch(() => {});

  const started = performance.now();
  const { onStillWaiting } = options;
  const heartbeat =
    onStillWaiting === undefined ? undefined : setInterval(() => onStillWaiting(performance.now() - started), options.stillWaitingEveryMs ?? STILL_WAITING_EVERY_MS);

  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<{ kind: 'timeout' }>((resolve) => {
    timer = setTimeout(() => resolve({ kind: 'timeout' }), options.timeoutMs);
  });
  const exited = vm === undefined ? never : vm.exited.then((exit) => ({ kind: 'exited' as const, exit }));
  const cancelled =
    signal === undefined
      ? never
      : new Promise<{ kind: 'cancelled' }>((resolve) => signal.addEventListener('abort', () => resolve({ kind: 'cancelled' }), { once: true }));

  try {
    const outcome = await Promise.race([polling, deadline, exited, cancelled]);
    switch (outcome.kind) {
      case 'ready':
        return outcome.value;
      case 'cancelled':
        throw new CancelledError(`Waiting for ${options.what}`);
      case 'exited': {
        if (vm === undefined) throw new Error('unreachable');
        const how = outcome.exit.signal !== null ? `was killed by ${outcome.exit.signal}` : `exited with code ${String(outcome.exit.exitCode)}`;
        throw new VmExitedError(
          `VM ${vm.name} ${how} while waiting for ${options.what}`,
          await vm.consoleTail(TAIL_LINES_IN_ERRORS),
          vm.consoleLogPath,
        );
      }
      case 'timeout': {
        if (vm === undefined) throw new TimeoutError(options.what, options.timeoutMs);
        const tail = (await vm.consoleTail(TAIL_LINES_IN_ERRORS)).trim();
        throw new TimeoutError(
          options.what,
          options.timeoutMs,
          `The VM's serial console log is ${vm.consoleLogPath}${tail === '' ? ' (empty: nothing booted?)' : `; its last lines:\n${tail}`}`,
        );
      }
    }
  } catch (error) {
    // A probe that failed because the user cancelled is a cancellation, not a probe failure.
    if (isAborted(signal) && !(error instanceof CancelledError)) throw new CancelledError(`Waiting for ${options.what}`);
    throw error;
  } finally {
    over.abort();
    clearTimeout(timer);
    clearInterval(heartbeat);
  }
}

/** A function, so that TypeScript does not keep the narrowing from the check at the start. */
function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}
