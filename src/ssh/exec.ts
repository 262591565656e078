import { rename, rm } from 'node:fs/promises';
import { CommandError, KibError } from '../core/errors.js';
import { run, type RunResult } from '../process/index.js';
// wait.ts directly, not the vm index: src/vm/boot-guest.ts uses this module.
import { waitForReady, type WaitForReadyOptions, type WatchedVm } from '../vm/wait.js';
import { scpFromArgs, sshArgs, sshToolCommand, type SshTarget } from './args.js';

export interface SshExecOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
  allowFailure?: boolean;
  /** Sent to the remote command's stdin (a script for `sh -s`, a file for `sudo tee`); a promise is sent when it resolves. */
  input?: string | Buffer | Promise<string | Buffer>;
  onLine?: (stream: 'stdout' | 'stderr', line: string) => void;
  logFile?: string;
}

/** ssh exits 255 when it could not connect or log in (a remote command's own codes are lower). */
export const SSH_CONNECTION_FAILED = 255;

/** Runs one command in the guest over SSH and returns its output. */
export async function sshExec(target: SshTarget, command: string | readonly string[], options: SshExecOptions = {}): Promise<RunResult> {
  return await run(...sshToolCommand(target, 'ssh', sshArgs(target, command)), {
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
    ...(options.allowFailure === undefined ? {} : { allowFailure: options.allowFailure }),
    ...(options.input === undefined ? {} : { input: options.input }),
    ...(options.onLine === undefined ? {} : { onLine: options.onLine }),
    ...(options.logFile === undefined ? {} : { logFile: options.logFile }),
  });
}

export interface SshWaitOptions {
  /** Fail at once (with the console tail) if this VM exits while we wait. */
  vm: WatchedVm | undefined;
  timeoutMs: number;
  signal?: AbortSignal;
  intervalMs?: number;
  /**
   * Gets "still waiting for SSH (1 min 30 s; last: …)" every `stillWaitingEveryMs` (30 s) while
   * the wait goes on, so a slow boot is visibly alive rather than silent.
   */
  onStillWaiting?: (message: string) => void;
  stillWaitingEveryMs?: number;
}

/** The heartbeat options for waitForReady: the message names what we wait for and the last error. */
function heartbeat(options: SshWaitOptions, what: string, lastError: () => string): Pick<WaitForReadyOptions<unknown>, 'onStillWaiting' | 'stillWaitingEveryMs'> {
  const { onStillWaiting } = options;
  if (onStillWaiting === undefined) return {};
  return {
    onStillWaiting: (elapsedMs) => onStillWaiting(stillWaitingMessage(what, elapsedMs, lastError())),
    ...(options.stillWaitingEveryMs === undefined ? {} : { stillWaitingEveryMs: options.stillWaitingEveryMs }),
  };
}

/**
 * Polls until `true` runs over SSH as the target user: sshd is up *and* cloud-init has created the
 * user with our key. Races the VM's exit and the deadline.
 */
export async function waitForSsh(target: SshTarget, options: SshWaitOptions): Promise<void> {
  let lastFailure = '';
  try {
    await waitForReady({
      ...heartbeat(options, 'SSH', () => lastFailure),
      what: `SSH login as ${target.user} on ${target.host}:${target.port}`,
      vm: options.vm,
      timeoutMs: options.timeoutMs,
      intervalMs: options.intervalMs ?? 2_000,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      probe: async (signal) => {
        try {
          const result = await sshExec(target, 'true', { signal, timeoutMs: 30_000, allowFailure: true });
          if (result.exitCode === 0) return true;
          lastFailure = result.stderr.trim();
          return undefined;
        } catch (error) {
          // A hung handshake (sshd still starting) is worth another try; anything else is not.
          if (error instanceof CommandError && error.reason === 'timeout') {
            lastFailure = 'the SSH handshake timed out';
            return undefined;
          }
          throw error;
        }
      },
    });
  } catch (error) {
    if (error instanceof KibError && error.code === 'TIMEOUT' && lastFailure !== '') {
      throw new KibError(error.code, `${error.message}; last ssh error: ${lastFailure}`, {
        ...(error.hint === undefined ? {} : { hint: error.hint }),
        cause: error,
      });
    }
    throw error;
  }
}

/**
 * Waits for cloud-init to finish in the guest (`cloud-init status --wait`). A degraded but
 * finished run (exit 2, cloud-init 23.4+) is returned, not thrown; an error (exit 1) is thrown
 * with cloud-init's own report.
 */
export async function waitForCloudInit(target: SshTarget, options: SshWaitOptions): Promise<string> {
  let lastFailure = 'cloud-init is still running';
  return await waitForReady({
    ...heartbeat(options, 'cloud-init', () => lastFailure),
    what: `cloud-init to finish in the VM on ${target.host}:${target.port}`,
    vm: options.vm,
    timeoutMs: options.timeoutMs,
    intervalMs: options.intervalMs ?? 2_000,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    probe: async (signal) => {
      const result = await sshExec(target, 'cloud-init status --wait --long', { signal, allowFailure: true });
      // `--wait` prints a dot per poll before the report; keep only the report.
      const output = `${result.stdout}${result.stderr}`.replace(/^\.+\n?/, '').trim();
      if (result.exitCode === 0 || result.exitCode === 2) return output;
      // The connection dropped (sshd restarted by cloud-init): ask again.
      if (result.exitCode === SSH_CONNECTION_FAILED) {
        lastFailure = result.stderr.trim() || 'the SSH connection dropped';
        return undefined;
      }
      throw new KibError('CLOUD_INIT_FAILED', `cloud-init reported an error in the VM (exit ${result.exitCode}):\n${output}`, {
        hint: 'See /var/log/cloud-init.log and /var/log/cloud-init-output.log in the guest, or the serial console log.',
      });
    },
  });
}

/** Copies one file out of the guest; the local file appears only when complete. */
export async function copyFromGuest(
  target: SshTarget,
  remotePath: string,
  localPath: string,
  options: { signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<void> {
  const partial = `${localPath}.partial`;
  try {
    await run(...sshToolCommand(target, 'scp', scpFromArgs(target, remotePath, partial)), {
      timeoutMs: options.timeoutMs ?? 600_000,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    await rename(partial, localPath);
  } catch (error) {
    await rm(partial, { force: true });
    throw error;
  }
}

/** "still waiting for SSH (1 min 30 s; last: Connection reset by peer)" for progress views. */
export function stillWaitingMessage(what: string, elapsedMs: number, lastError: string): string {
  const seconds = Math.round(elapsedMs / 1000);
  const elapsed = seconds >= 60 ? `${Math.floor(seconds / 60)} min ${seconds % 60} s` : `${seconds} s`;
  const last = lastError.split('\n').filter((line) => line.trim() !== '').at(-1);
  return `still waiting for ${what} (${elapsed}${last === undefined ? '' : `; last: ${last.trim().slice(0, 160)}`})`;
}
