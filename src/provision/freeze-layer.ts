import { KibError } from '../core/errors.js';
import type { Reporter } from '../report/events.js';
import { sshExec, type SshTarget } from '../ssh/index.js';
import { whileVmRuns, type StartedVm } from '../vm/index.js';
import { LAYER_STASH_READY, LAYER_STASH_RESTORED, renderStashBuildUserScript } from './cloud-config.js';

/** The build VM's disk as QEMU names it (`-drive id=disk0`, src/vm/qemu-args.ts). */
export const BUILD_DISK_DEVICE = 'disk0';

/**
 * Freezes the running build VM's disk without a reboot and returns the frozen file:
 *
 * 1. over the open SSH connection, a root shell takes the build user off the disk (to tmpfs) and
 *    syncs (renderStashBuildUserScript), then waits;
 * 2. the guest agent freezes the filesystems (`guest-fsfreeze-freeze`), so the file holds a clean
 *    filesystem rather than a crash-consistent one; without an agent the sync has to do;
 * 3. QMP `blockdev-snapshot-sync` makes `nextPath` the VM's new top overlay, backed by `activePath`,
 *    which QEMU no longer writes to: that file is the layer;
 * 4. the filesystems are thawed and the waiting shell puts the build user back.
 *
 * QMP reference: https://qemu-project.gitlab.io/qemu/interop/qemu-qmp-ref.html (blockdev-snapshot-sync);
 * guest agent: https://qemu-project.gitlab.io/qemu/interop/qemu-ga-ref.html (guest-fsfreeze-freeze).
 */
export async function freezeLayer(options: {
  vm: StartedVm;
  /** A target on the open SSH master connection, as the build user. */
  target: SshTarget;
  user: string;
  /** The file the VM writes to now. */
  activePath: string;
  /** The new overlay the VM writes to from now on. */
  nextPath: string;
  signal: AbortSignal;
  reporter: Reporter;
}): Promise<string> {
  const { vm, reporter, signal } = options;
  let ready!: () => void;
  const stashed = new Promise<void>((resolve) => {
    ready = resolve;
  });
  let answer!: (text: string) => void;
  const go = new Promise<string>((resolve) => {
    answer = resolve;
  });
  const lines: string[] = [];
  const shell = sshExec(options.target, ['sudo', '/bin/sh', '-c', renderStashBuildUserScript(options.user)], {
    input: go,
    timeoutMs: 600_000,
    signal,
    allowFailure: true,
    onLine: (_stream, line) => {
      lines.push(line);
      reporter.emit({ type: 'log', source: 'layer', line });
      if (line.trim() === LAYER_STASH_READY) ready();
    },
  });
  // Whatever happens below, the shell gets its answer and puts the build user back.
  try {
    const first = await Promise.race([stashed.then(() => 'ready' as const), shell.then(() => 'exited' as const)]);
    if (first === 'exited') {
      const result = await shell;
      throw new KibError('LAYER_FREEZE_FAILED', `Could not take the build user off the disk before freezing the layer (exit ${result.exitCode}): ${lines.slice(-5).join(' ')}`);
    }
    await whileVmRuns(
      vm,
      async () => {
        const agent = vm.guestAgent();
        let frozen = false;
        try {
          await agent.execute('guest-fsfreeze-freeze', undefined, { timeoutMs: 60_000 });
          frozen = true;
        } catch (error) {
          reporter.emit({ type: 'log', source: 'layer', level: 'warn', line: `the guest agent did not freeze the filesystems (${(error as Error).message}); the layer relies on the sync before it` });
        }
        try {
          await vm.qmp().execute('blockdev-snapshot-sync', { device: BUILD_DISK_DEVICE, 'snapshot-file': options.nextPath, format: 'qcow2' }, { timeoutMs: 60_000 });
        } finally {
          if (frozen) await agent.execute('guest-fsfreeze-thaw', undefined, { timeoutMs: 60_000 });
        }
      },
      { what: 'freezing the disk into a layer', signal },
    );
  } finally {
    answer('frozen\n');
  }
  const result = await shell;
  if (result.exitCode !== 0 || !lines.some((line) => line.trim() === LAYER_STASH_RESTORED)) {
    throw new KibError('LAYER_FREEZE_FAILED', `The build user was not put back after freezing the layer (exit ${result.exitCode}): ${lines.slice(-5).join(' ')} ${result.stderr.trim()}`);
  }
  return options.activePath;
}
