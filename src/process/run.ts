import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import { constants } from 'node:os';
import { CancelledError, CommandError } from '../core/errors.js';
import { lastLines, LineSplitter, TailBuffer } from './lines.js';
import { registerGroup, signalGroup, unregisterGroup } from './registry.js';

export interface RunOptions {
  cwd?: string;
  /** Added to the minimal environment (PATH, HOME, LANG=C.UTF-8); nothing else is inherited. */
  env?: Readonly<Record<string, string>>;
  /**
   * Written to the child's stdin, which is otherwise not connected. A promise is written when it
   * resolves (stdin stays open until then): a signal to a child that waits on `read`.
   */
  input?: string | Buffer | Promise<string | Buffer>;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Called for every complete line of output, as it arrives. */
  onLine?: (stream: 'stdout' | 'stderr', line: string) => void;
  /** Both streams are appended here, after a `$ command` header line. */
  logFile?: string;
  /** Return the exit code instead of throwing CommandError when it is not 0. */
  allowFailure?: boolean;
  /** How long a child gets between SIGTERM and SIGKILL on timeout or cancel. */
  killGraceMs?: number;
}

export interface RunResult {
  /** The exit code, or 128 + the signal number when the child was killed by a signal. */
  exitCode: number;
  stdout: string;
  /** The last 256 KiB of stderr. */
  stderr: string;
  durationMs: number;
}

const STDERR_KEEP_CHARS = 256 * 1024;
const STDERR_TAIL_LINES = 30;
const DEFAULT_KILL_GRACE_MS = 5_000;
/** After the child exits, how long a grandchild that inherited its pipes may hold them open. */
const PIPE_DRAIN_MS = 2_000;
const FALLBACK_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * The environment every child gets: enough to find programs and read UTF-8, and nothing from our
 * own environment that could change a tool's behaviour by accident.
 */
export function minimalEnv(additions: Readonly<Record<string, string>> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? FALLBACK_PATH,
    HOME: process.env.HOME ?? '/',
    LANG: 'C.UTF-8',
    ...additions,
  };
}

/**
 * Runs a short-lived command to completion. The child gets its own process group so that a
 * timeout or cancel also stops whatever it started (ssh, ansible workers, qemu-img helpers).
 */
export async function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const argv = [command, ...args];
  if (options.signal?.aborted === true) throw new CancelledError(`\`${command}\``);
  const started = performance.now();
  const logFd = options.logFile === undefined ? undefined : openSync(options.logFile, 'a');
  const writeLog = (text: string): void => {
    if (logFd !== undefined) writeSync(logFd, text);
  };
  writeLog(`$ ${argv.map(quoteForLog).join(' ')}\n`);

  let child: ChildProcess;
  try {
    child = spawn(command, [...args], {
      cwd: options.cwd,
      env: minimalEnv(options.env),
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      detached: true,
    });
  } catch (error) {
    if (logFd !== undefined) closeSync(logFd);
    throw spawnError(argv, error);
  }

  return await new Promise<RunResult>((resolve, reject) => {
    const pid = child.pid;
    const stdoutChunks: string[] = [];
    const stderr = new TailBuffer(STDERR_KEEP_CHARS);
    let callbackError: unknown;
    const deliver = (stream: 'stdout' | 'stderr', line: string): void => {
      if (options.onLine === undefined || callbackError !== undefined) return;
      try {
        options.onLine(stream, line);
      } catch (error) {
        callbackError = error;
      }
    };
    const stdoutLines = new LineSplitter((line) => deliver('stdout', line));
    const stderrLines = new LineSplitter((line) => deliver('stderr', line));

    let termination: 'timeout' | 'aborted' | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    let drainTimer: NodeJS.Timeout | undefined;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let settled = false;

    const terminate = (why: 'timeout' | 'aborted'): void => {
      if (termination !== undefined || exit !== undefined || pid === undefined) return;
      termination = why;
      signalGroup(pid, 'SIGTERM');
      killTimer = setTimeout(() => signalGroup(pid, 'SIGKILL'), options.killGraceMs ?? DEFAULT_KILL_GRACE_MS);
    };
    const timeoutTimer =
      options.timeoutMs === undefined ? undefined : setTimeout(() => terminate('timeout'), options.timeoutMs);
    const onAbort = (): void => terminate('aborted');
    options.signal?.addEventListener('abort', onAbort, { once: true });

    const cleanup = (): void => {
      clearTimeout(timeoutTimer);
      clearTimeout(killTimer);
      clearTimeout(drainTimer);
      options.signal?.removeEventListener('abort', onAbort);
      if (pid !== undefined) unregisterGroup(pid);
      if (logFd !== undefined) closeSync(logFd);
    };

    const finish = (): void => {
      if (settled || exit === undefined) return;
      settled = true;
      stdoutLines.flush();
      stderrLines.flush();
      cleanup();
      const durationMs = Math.round(performance.now() - started);
      const stderrText = stderr.text;
      const stderrTail = lastLines(stderrText, STDERR_TAIL_LINES);
      if (termination === 'aborted') {
        reject(new CancelledError(`\`${command}\``));
        return;
      }
      if (termination === 'timeout') {
        reject(
          new CommandError({
            command: argv,
            exitCode: exit.code,
            signal: exit.signal,
            reason: 'timeout',
            stderrTail,
            hint: `It was stopped after ${String(options.timeoutMs)} ms.`,
          }),
        );
        return;
      }
      if (callbackError !== undefined) {
        reject(callbackError);
        return;
      }
      const exitCode = exit.code ?? 128 + (exit.signal === null ? 0 : (constants.signals[exit.signal] ?? 0));
      if (exitCode !== 0 && options.allowFailure !== true) {
        reject(new CommandError({ command: argv, exitCode: exit.code, signal: exit.signal, reason: 'exit', stderrTail }));
        return;
      }
      resolve({ exitCode, stdout: stdoutChunks.join(''), stderr: stderrText, durationMs });
    };

    child.on('error', (error) => {
      if (settled) return;
      if (pid === undefined) {
        settled = true;
        cleanup();
        reject(spawnError(argv, error));
      }
      // Other errors (a failed kill) are followed by 'exit' or 'close', which settle the run.
    });

    if (pid === undefined) return; // 'error' follows and rejects.
    registerGroup(pid);

    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      stdoutChunks.push(chunk);
      writeLog(chunk);
      stdoutLines.push(chunk);
    });
    child.stderr?.on('data', (chunk: string) => {
      stderr.push(chunk);
      writeLog(chunk);
      stderrLines.push(chunk);
    });
    if (options.input !== undefined && child.stdin !== null) {
      // A child that exits without reading its input closes the pipe; that is not our error.
      child.stdin.on('error', () => {});
      const stdin = child.stdin;
      if (options.input instanceof Promise) {
        options.input.then(
          (text) => stdin.end(text),
          () => stdin.end(),
        );
      } else {
        stdin.end(options.input);
      }
    }

    child.on('exit', (code, signal) => {
      exit = { code, signal };
      // A timed-out or cancelled child may leave helpers behind in its group.
      if (termination !== undefined) signalGroup(pid, 'SIGKILL');
      drainTimer = setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
        finish();
      }, PIPE_DRAIN_MS);
    });
    child.on('close', (code, signal) => {
      exit ??= { code, signal };
      finish();
    });
  });
}

/** The CommandError for a program that could not be started, with a hint when it is missing. */
export function spawnError(argv: readonly string[], error: unknown): CommandError {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const program = argv[0] ?? '';
  return new CommandError({
    command: argv,
    exitCode: null,
    signal: null,
    reason: 'spawn',
    stderrTail: error instanceof Error ? error.message : String(error),
    ...(code === undefined || code === 'ENOENT' ? { hint: `'${program}' is not installed or not on PATH` } : {}),
    cause: error,
  });
}

function quoteForLog(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}
