/**
 * One error family for the whole tool. Every error has a stable `code` (for --json and tests),
 * a message that names the thing, the expectation and what was measured, and an optional `hint`
 * that tells the user what to do next. The CLI maps them to exit codes.
 */
export class KibError extends Error {
  readonly code: string;
  readonly hint: string | undefined;

  constructor(code: string, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.hint = options.hint;
  }
}

/** One problem in a build definition, located by its path (`disk.size`). */
export interface ConfigIssue {
  path: string;
  message: string;
}

export class ConfigError extends KibError {
  readonly issues: readonly ConfigIssue[];
  readonly file: string | undefined;

  constructor(issues: readonly ConfigIssue[], file?: string) {
    const where = file === undefined ? 'the build definition' : file;
    const lines = issues.map((issue) => `  ${issue.path === '' ? '(root)' : issue.path}: ${issue.message}`);
    super('CONFIG_INVALID', `${where} has ${issues.length} problem${issues.length === 1 ? '' : 's'}:\n${lines.join('\n')}`);
    this.issues = issues;
    this.file = file;
  }
}

/** Wrong command-line usage: unknown flag, missing argument. */
export class UsageError extends KibError {
  constructor(message: string, hint?: string) {
    super('USAGE', message, hint === undefined ? {} : { hint });
  }
}

export class MissingToolError extends KibError {
  readonly tools: readonly { command: string; purpose: string; packageName: string }[];

  constructor(tools: readonly { command: string; purpose: string; packageName: string }[]) {
    const lines = tools.map((t) => `  Could not find '${t.command}', needed to ${t.purpose} — install ${t.packageName}`);
    const packages = [...new Set(tools.map((t) => t.packageName))].join(' ');
    super('MISSING_TOOL', `Missing host tools:\n${lines.join('\n')}`, {
      hint: `On Debian or Ubuntu: sudo apt-get install --no-install-recommends ${packages}`,
    });
    this.tools = tools;
  }
}

export class ChecksumMismatchError extends KibError {
  readonly url: string;
  readonly expected: string;
  readonly actual: string;

  constructor(url: string, expected: string, actual: string) {
    super('CHECKSUM_MISMATCH', `sha256 of ${url} is ${actual}, expected ${expected}; nothing was added to the cache`, {
      hint: 'The download is corrupt or the pinned checksum is out of date. If the base image changed on purpose, run `kib lock --update`.',
    });
    this.url = url;
    this.expected = expected;
    this.actual = actual;
  }
}

export class NetworkError extends KibError {
  readonly url: string;
  /** The HTTP status when the server answered with an error; undefined when it could not be reached. */
  readonly status: number | undefined;

  constructor(url: string, message: string, options: { hint?: string; cause?: unknown; status?: number } = {}) {
    const { status, ...rest } = options;
    super('NETWORK', message, rest);
    this.url = url;
    this.status = status;
  }
}

export class CommandError extends KibError {
  readonly command: readonly string[];
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly reason: 'exit' | 'timeout' | 'aborted' | 'spawn';
  readonly stderrTail: string;

  constructor(init: {
    command: readonly string[];
    exitCode: number | null;
    signal: string | null;
    reason: 'exit' | 'timeout' | 'aborted' | 'spawn';
    stderrTail: string;
    hint?: string;
    cause?: unknown;
  }) {
    const what = init.command.join(' ');
    const how =
      init.reason === 'timeout'
        ? 'timed out'
        : init.reason === 'aborted'
          ? 'was cancelled'
          : init.reason === 'spawn'
            ? 'could not be started'
            : init.signal !== null
              ? `was killed by ${init.signal}`
              : `exited with code ${String(init.exitCode)}`;
    const tail = init.stderrTail.trim() === '' ? '' : `\n${indent(init.stderrTail.trim())}`;
    super('COMMAND_FAILED', `\`${truncate(what, 200)}\` ${how}${tail}`, {
      ...(init.hint === undefined ? {} : { hint: init.hint }),
      ...(init.cause === undefined ? {} : { cause: init.cause }),
    });
    this.command = init.command;
    this.exitCode = init.exitCode;
    this.signal = init.signal;
    this.reason = init.reason;
    this.stderrTail = init.stderrTail;
  }
}

export class VmExitedError extends KibError {
  readonly consoleTail: string;
  readonly consoleLogPath: string;

  constructor(message: string, consoleTail: string, consoleLogPath: string) {
    super('VM_EXITED', `${message}\nLast console lines (${consoleLogPath}):\n${indent(consoleTail.trim())}`);
    this.consoleTail = consoleTail;
    this.consoleLogPath = consoleLogPath;
  }
}

/** A command (SSH, QMP, guest agent) sent to a VM handle that is stopped or snapshotted. */
export class VmNotRunningError extends KibError {
  readonly vmName: string;
  readonly state: string;

  constructor(vmName: string, state: string, command: string, detail: string) {
    super('VM_NOT_RUNNING', `Cannot send ${command} to VM ${vmName}: it is ${state}${detail === '' ? '' : ` (${detail})`}`, {
      hint: state === 'snapshotted' ? 'Restore the snapshot (restoreVm) and use the new handle.' : 'Start the VM again; a stopped handle takes no commands.',
    });
    this.vmName = vmName;
    this.state = state;
  }
}

export class TimeoutError extends KibError {
  constructor(what: string, timeoutMs: number, hint?: string) {
    super('TIMEOUT', `${what} did not happen within ${Math.round(timeoutMs / 1000)} s`, hint === undefined ? {} : { hint });
  }
}

export class ProvisionError extends KibError {
  readonly failedTask: string | undefined;
  readonly logPath: string;

  constructor(message: string, failedTask: string | undefined, logPath: string) {
    super('PROVISION_FAILED', `${message}${failedTask === undefined ? '' : ` (failed task: ${failedTask})`}`, {
      hint: `The full Ansible log is ${logPath}`,
    });
    this.failedTask = failedTask;
    this.logPath = logPath;
  }
}

/** Thrown by slow functions when their AbortSignal fires; the CLI exits 130. */
export class CancelledError extends KibError {
  constructor(what = 'The operation') {
    super('CANCELLED', `${what} was cancelled`);
  }
}

export function isCancelled(error: unknown): boolean {
  return error instanceof CancelledError || (error instanceof Error && error.name === 'AbortError');
}

/** Throws CancelledError when the signal has fired. Call between slow steps. */
export function throwIfAborted(signal: AbortSignal | undefined, what?: string): void {
  if (signal?.aborted === true) throw new CancelledError(what);
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => `    ${line}`)
    .join('\n');
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/**
 * The most specific reason a failed fetch() gives: undici wraps the system error (`ENOTFOUND
 * pkgs.k8s.io`, `ECONNREFUSED 127.0.0.1:9`, `other side closed`) in causes under "fetch failed".
 */
export function describeFetchError(error: unknown): string {
  let current: unknown = error;
  let message = error instanceof Error ? error.message : String(error);
  for (let depth = 0; depth < 4 && current instanceof Error; depth += 1) {
    const { code } = current as { code?: unknown };
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return current.message.includes(code) ? current.message : `${code} ${current.message}`;
    if (current.message !== '' && current.message !== 'fetch failed') message = current.message;
    current = current.cause;
  }
  return message;
}
