import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { registerGroup, signalGroup, unregisterGroup } from './registry.js';
import { minimalEnv, spawnError } from './run.js';

export interface DaemonOptions {
  cwd?: string;
  /** Added to the minimal environment (PATH, HOME, LANG=C.UTF-8). */
  env?: Readonly<Record<string, string>>;
  /** Where the daemon's stdout goes (appended); discarded when not given. */
  stdoutFile?: string;
  /** Where the daemon's stderr goes (appended); discarded when not given. */
  stderrFile?: string;
  /** Written with the daemon's pid, for tools that look for one. */
  pidFile?: string;
}

export interface DaemonExit {
  exitCode: number | null;
  signal: string | null;
}

export interface StopOptions {
  /** Asks the daemon to finish on its own terms (QMP power-down, guest-agent shutdown). */
  graceful?: () => Promise<void>;
  /** How long to wait for an exit after `graceful` returns. */
  graceMs?: number;
  /** How long to wait between SIGTERM and SIGKILL. */
  termMs?: number;
}

export interface StartedDaemon extends AsyncDisposable {
  readonly pid: number;
  readonly command: readonly string[];
  /** Settles when the daemon has exited, however that happened; never rejects. */
  readonly exited: Promise<DaemonExit>;
  isRunning(): boolean;
  /**
   * Lets the daemon outlive this process: the exit hook no longer kills its group. For daemons a
   * later process stops by pid (a cluster's QEMUs, dnsmasq and seed server).
   */
  detach(): void;
  /**
   * graceful → wait → SIGTERM to the group → wait → SIGKILL. Idempotent: concurrent and repeated
   * calls share one ladder. Afterwards no process of the daemon's group is left.
   */
  stop(options?: StopOptions): Promise<DaemonExit>;
}

const DEFAULT_GRACE_MS = 10_000;
const DEFAULT_TERM_MS = 5_000;
/** SIGKILL cannot be ignored; this only bounds the wait for the kernel to reap. */
const KILL_WAIT_MS = 5_000;

/**
 * Starts a long-lived child (QEMU) in its own process group with its output in files, never on
 * our stdout. The child does not keep Node's event loop alive: if we finish while it still runs,
 * the exit hook kills it.
 */
export function spawnDaemon(command: string, args: readonly string[], options: DaemonOptions = {}): StartedDaemon {
  const argv = [command, ...args];
  const stdoutFd = options.stdoutFile === undefined ? 'ignore' : openSync(options.stdoutFile, 'a');
  const stderrFd =
    options.stderrFile === undefined
      ? 'ignore'
      : options.stderrFile === options.stdoutFile
        ? stdoutFd
        : openSync(options.stderrFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(command, [...args], {
      cwd: options.cwd,
      env: minimalEnv(options.env),
      stdio: ['ignore', stdoutFd, stderrFd],
      detached: true,
    });
  } catch (error) {
    throw spawnError(argv, error);
  } finally {
    // The child has its own copies of the descriptors now.
    if (typeof stdoutFd === 'number') closeSync(stdoutFd);
    if (typeof stderrFd === 'number' && stderrFd !== stdoutFd) closeSync(stderrFd);
  }

  const pid = child.pid;
  if (pid === undefined) {
    // Node reports the reason on the next tick; without a listener that event would crash us.
    child.on('error', () => {});
    throw spawnError(argv, new Error(`spawn ${command} failed: not found or not executable`));
  }
  registerGroup(pid);
  child.unref();
  if (options.pidFile !== undefined) writeFileSync(options.pidFile, `${pid}\n`);

  let exitInfo: DaemonExit | undefined;
  const exited = new Promise<DaemonExit>((resolve) => {
    child.on('exit', (code, signal) => {
      exitInfo = { exitCode: code, signal };
      // Helpers the daemon forked are in its group; they go with it.
      signalGroup(pid, 'SIGKILL');
      unregisterGroup(pid);
      resolve(exitInfo);
    });
  });
  child.on('error', () => {
    // Failed kill() calls land here; the exit event is what we rely on.
  });

  let stopping: Promise<DaemonExit> | undefined;
  const stop = (stopOptions: StopOptions = {}): Promise<DaemonExit> => {
    stopping ??= stopLadder(pid, exited, () => exitInfo !== undefined, stopOptions);
    return stopping;
  };

  return {
    pid,
    command: argv,
    exited,
    isRunning: () => exitInfo === undefined,
    detach: () => unregisterGroup(pid),
    stop,
    [Symbol.asyncDispose]: async () => {
      await stop();
    },
  };
}

async function stopLadder(
  pid: number,
  exited: Promise<DaemonExit>,
  hasExited: () => boolean,
  options: StopOptions,
): Promise<DaemonExit> {
  if (hasExited()) return await exited;
  if (options.graceful !== undefined) {
    const graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
    const deadline = performance.now() + graceMs;
    try {
      await raceExit(options.graceful(), exited, graceMs);
    } catch {
      // A failed graceful request just means we go on to signals.
    }
    if (await exitsWithin(exited, Math.max(0, deadline - performance.now()))) return await exited;
  }
  signalGroup(pid, 'SIGTERM');
  if (await exitsWithin(exited, options.termMs ?? DEFAULT_TERM_MS)) return await exited;
  signalGroup(pid, 'SIGKILL');
  if (await exitsWithin(exited, KILL_WAIT_MS)) return await exited;
  throw new Error(`process group ${pid} did not exit after SIGKILL within ${KILL_WAIT_MS} ms`);
}

/** Waits for `work`, but no longer than the daemon lives or `ms` allows. */
async function raceExit(work: Promise<void>, exited: Promise<DaemonExit>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      work,
      exited,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** True when the process exits within `ms`; false when the time runs out first. */
export async function exitsWithin(exited: Promise<DaemonExit>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      exited.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

