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
/**
 * When work fails, how long to wait for the VM's exit to land before blaming the work: a killed
 * QEMU closes its forwarded sockets at once, so ssh (and Ansible) often fail a moment before the
 * exit event arrives.
 */
const EXIT_GRACE_MS = 3_000;
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
        throw new VmExitedError(
          `VM ${vm.name} ${describeVmExit(outcome.exit)} while waiting for ${options.what}`,
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

/** "was killed by SIGKILL" / "exited with code 1", for messages about a VM's death. */
export function describeVmExit(exit: DaemonExit): string {
  return exit.signal !== null ? `was killed by ${exit.signal}` : `exited with code ${String(exit.exitCode)}`;
}

export interface WhileVmRunsOptions {
  /** What the work does, as the end of "VM build was killed by SIGKILL while …". */
  what: string;
  signal?: AbortSignal;
  /** See EXIT_GRACE_MS. */
  exitGraceMs?: number;
}

/**
 * Runs work that needs the VM (a playbook, a long SSH command) and reports the VM's death ahead of
 * the symptom it causes: if QEMU exits while the work runs, or the work fails and QEMU turns out
 * to have exited too, the work is cancelled and a VmExitedError (exit code or signal, console
 * tail) is thrown with the work's own failure as the symptom. The work gets a signal that fires
 * when the VM dies or the caller cancels.
 */
export async function whileVmRuns<T>(vm: WatchedVm, work: (signal: AbortSignal) => Promise<T>, options: WhileVmRunsOptions): Promise<T> {
  if (options.signal?.aborted === true) throw new CancelledError(options.what);
  const died = new AbortController();
  const signal = options.signal === undefined ? died.signal : AbortSignal.any([options.signal, died.signal]);
  const exited = vm.exited.then((exit) => ({ kind: 'exited' as const, exit }));
  const working = work(signal).then(
    (value) => ({ kind: 'done' as const, value }),
    (error: unknown) => ({ kind: 'failed' as const, error }),
  );
  let outcome = await Promise.race([working, exited]);
  let symptom: unknown;
  if (outcome.kind === 'failed') {
    if (isAborted(options.signal)) throw outcome.error;
    symptom = outcome.error;
    const late = await Promise.race([exited, sleep(options.exitGraceMs ?? EXIT_GRACE_MS).then(() => undefined)]);
    if (late === undefined) throw outcome.error;
    outcome = late;
  }
  if (outcome.kind === 'done') return outcome.value;
  died.abort();
  if (symptom === undefined) {
    // Let the work wind down (its children killed by the signal) before reporting.
    const settled = await Promise.race([working, sleep(10_000).then(() => undefined)]);
    if (settled?.kind === 'failed') symptom = settled.error;
  }
  const symptomText = symptom === undefined ? '' : `; what that caused: ${firstLine(symptom)}`;
  throw new VmExitedError(`VM ${vm.name} ${describeVmExit(outcome.exit)} while ${options.what}${symptomText}`, await vm.consoleTail(TAIL_LINES_IN_ERRORS), vm.consoleLogPath);
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return (text.split('\n').find((line) => line.trim() !== '') ?? text).trim().slice(0, 300);
}
