import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KibError } from '../core/errors.js';
import { spawnDaemon } from '../process/index.js';
import { sshOptionArgs, sshToolCommand, type SshTarget } from './args.js';

export interface SshMaster extends AsyncDisposable {
  /** The same target, with its commands multiplexed over the master connection. */
  readonly target: SshTarget;
  close(): Promise<void>;
}

/**
 * Opens one authenticated SSH connection that later commands share. Needed where the guest stops
 * accepting new logins while we still need a root shell: sealing removes the SSH host keys, and
 * sshd reads them for every new connection.
 */
export async function openSshMaster(target: SshTarget, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<SshMaster> {
  // A short directory: the socket path must fit a Unix socket address (108 bytes).
  const dir = await mkdtemp(join(tmpdir(), 'kib-ssh-'));
  const controlPath = join(dir, 'master');
  const master = spawnDaemon(...sshToolCommand(target, 'ssh', [...sshOptionArgs(target), '-p', String(target.port), '-M', '-S', controlPath, '-o', 'ControlPersist=no', '-N', '--', `${target.user}@${target.host}`]), {
    stderrFile: join(dir, 'master.log'),
  });
  const close = async (): Promise<void> => {
    await master.stop({ graceMs: 0 });
    await rm(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  try {
    for (;;) {
      if (await access(controlPath).then(() => true, () => false)) break;
      if (!master.isRunning()) throw new KibError('SSH_MASTER_FAILED', `Could not open a master SSH connection to ${target.user}@${target.host}:${target.port}`);
      if (Date.now() > deadline || options.signal?.aborted === true) throw new KibError('SSH_MASTER_FAILED', `The master SSH connection to ${target.host}:${target.port} did not come up`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } catch (error) {
    await close();
    throw error;
  }
  return { target: { ...target, controlPath }, close, [Symbol.asyncDispose]: close };
}
