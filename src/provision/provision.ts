import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CancelledError, ProvisionError, throwIfAborted } from '../core/errors.js';
import type { BaseImage, DiskImage } from '../core/types.js';
import type { Reporter } from '../report/events.js';
import { run } from '../process/index.js';
import { openSshMaster, sshExec, type SshTarget } from '../ssh/index.js';
import { bootGuest, whileVmRuns } from '../vm/index.js';
import {
  AnsibleOutputTracker,
  ansibleEnv,
  ansiblePlaybookArgs,
  countListedTasks,
  renderAnsibleConfig,
  renderInventory,
  type KibPlaybookVars,
} from './ansible.js';
import { renderBuildMetaData, renderBuildUserData, renderFinalSealScript } from './cloud-config.js';
import { parseGuestInventory, type GuestInventory } from '../core/inventory.js';

export const BUILD_USER = 'kib';

export interface ProvisionSpec {
  base: BaseImage;
  name: string;
  diskSizeBytes: number;
  vm: { cpus: number; memoryMiB: number; accelerator: 'kvm' | 'tcg'; firmware: 'bios' | 'uefi'; bootTimeoutMs: number };
  playbookPath: string;
  /** kib_* variables (without kib_build_user and kib_inventory_local_path, which are set here) plus provision.vars. */
  vars: Omit<KibPlaybookVars, 'kib_build_user' | 'kib_inventory_local_path'> & Record<string, unknown>;
}

export interface ProvisionResult {
  disk: DiskImage;
  inventory: GuestInventory;
  ansibleLogPath: string;
  consoleLogPath: string;
  /** Wall time of the steps inside the phase, for the manifest and the benchmark. */
  stepsMs: { boot: number; cloudInit: number; playbook: number; seal: number };
}

/**
 * The provision phase: a qcow2 overlay on the cached base, booted under QEMU with a NoCloud seed
 * that carries an ephemeral key; the playbook runs over SSH; then the build user is removed, free
 * space trimmed and the VM powered off. The overlay is the sealed disk the export phase reads.
 *
 * Stages: the playbook's roles are tagged by stage (os, runtime, kubernetes, images, finalize), and
 * all of them run in this one VM session. Nothing is cached per stage; `kib plan` prints the key
 * each stage would have (src/pipeline/plan.ts), which no build uses yet.
 */
export async function provisionImage(
  spec: ProvisionSpec,
  options: { workDir: string; logDir: string; stateDir: string; signal: AbortSignal; reporter: Reporter },
): Promise<ProvisionResult> {
  const { workDir, logDir, signal, reporter } = options;
  const step = (message: string): void => reporter.emit({ type: 'step', phase: 'provision', message });
  await mkdir(workDir, { recursive: true });

  // The message starts with "booting the build VM": bench/lib/timings.mjs finds the boot step by it.
  step(`booting the build VM (${spec.vm.accelerator}, ${spec.vm.cpus} vCPU, ${spec.vm.memoryMiB} MiB, ${spec.vm.firmware}) on a ${formatGiB(spec.diskSizeBytes)} overlay of the base image`);
  await using guest = await bootGuest(
    {
      name: 'kib-build',
      workDir,
      // Kept: the sealed overlay is what the export phase reads.
      disk: { kind: 'overlay', basePath: spec.base.path, baseFormat: spec.base.format, sizeBytes: spec.diskSizeBytes, keep: true },
      seed: {
        kind: 'nocloud',
        metaData: renderBuildMetaData({ instanceId: `kib-build-${Date.now().toString(36)}`, hostname: 'kib-build' }),
      },
      userData: (publicKey) => renderBuildUserData({ user: BUILD_USER, publicKey }),
      user: BUILD_USER,
      vm: {
        cpus: spec.vm.cpus,
        memoryMiB: spec.vm.memoryMiB,
        accelerator: spec.vm.accelerator,
        firmware: spec.vm.firmware,
        network: 'full',
        stateDir: options.stateDir,
        consoleLogPath: join(logDir, 'console.log'),
      },
      wait: 'cloud-init',
      bootTimeoutMs: spec.vm.bootTimeoutMs,
    },
    { signal, reporter, onStep: step },
  );
  const { vm } = guest;
  const target = guest.requireSsh();
  const { disk } = guest;

  // Opened before the playbook: after the seal role removes the SSH host keys, sshd accepts no new
  // connection, and the final step still needs a root shell.
  await using master = await openSshMaster(target, { signal });

  const playbookStarted = performance.now();
  const ansibleLogPath = join(logDir, 'ansible.log');
  const inventoryDest = join(workDir, 'inventory.json');
  // A VM that dies mid-playbook is reported as dead (signal or exit code, console tail) ahead of
  // Ansible's UNREACHABLE, which is only the symptom.
  await whileVmRuns(
    vm,
    (playbookSignal) =>
      runPlaybook({
        target,
        playbookPath: spec.playbookPath,
        vars: { ...spec.vars, kib_build_user: BUILD_USER, kib_inventory_local_path: inventoryDest },
        workDir,
        ansibleLogPath,
        signal: playbookSignal,
        reporter,
      }),
    { what: `running the playbook (Ansible log: ${ansibleLogPath})`, signal },
  );
  const playbookMs = performance.now() - playbookStarted;
  const inventory = parseGuestInventory(await readFile(inventoryDest, 'utf8').catch(() => {
    throw new ProvisionError('The playbook did not deliver the guest inventory (/var/lib/kib/inventory.json)', undefined, ansibleLogPath);
  }));

  step('removing the build user, trimming free space and powering off');
  const sealStarted = performance.now();
  const sealed = await sshExec(master.target, 'sudo /bin/sh -s', { input: renderFinalSealScript(BUILD_USER), timeoutMs: 600_000, signal, allowFailure: true });
  for (const line of `${sealed.stdout}\n${sealed.stderr}`.split('\n')) if (line.trim() !== '') reporter.emit({ type: 'log', source: 'seal', line });
  if (sealed.exitCode !== 0 && sealed.exitCode !== 255) {
    throw new ProvisionError(`The final seal step (remove the build user, fstrim, power off) exited with code ${sealed.exitCode}: ${sealed.stderr.trim()}`, undefined, ansibleLogPath);
  }
  if (sealed.exitCode === 255 && !/trimmed/.test(sealed.stdout)) {
    // 255 is ssh's own failure; once the power-off has started it may also just be the connection closing.
    throw new ProvisionError(`Could not run the final seal step over SSH: ${sealed.stderr.trim()}`, undefined, ansibleLogPath);
  }
  try {
    await vm.waitForExit({ timeoutMs: 120_000, signal });
  } catch (error) {
    if (signal.aborted) throw error;
    // The guest did not power off by itself: press the ACPI power button, so the disk is still
    // shut down cleanly, before giving up.
    reporter.emit({ type: 'warning', message: 'the build VM did not power off after sealing; sending an ACPI power-down' });
    await vm.powerDown({ timeoutMs: 180_000, signal });
  }
  const sealMs = performance.now() - sealStarted;
  throwIfAborted(signal, 'The build');

  return {
    disk,
    inventory,
    ansibleLogPath,
    consoleLogPath: vm.consoleLogPath,
    stepsMs: { boot: guest.bootMs, cloudInit: guest.cloudInitMs, playbook: playbookMs, seal: sealMs },
  };
}

/** Runs ansible-playbook against the build VM, streaming task names as progress. */
export async function runPlaybook(options: {
  target: SshTarget;
  playbookPath: string;
  vars: Record<string, unknown>;
  workDir: string;
  ansibleLogPath: string;
  signal: AbortSignal;
  reporter: Reporter;
}): Promise<void> {
  const { workDir } = options;
  const ansibleDir = join(workDir, 'ansible');
  await mkdir(ansibleDir, { recursive: true });
  // SSH's control socket path must fit a Unix socket address (108 bytes); the work dir may be deep.
  const controlPathDir = await mkdtemp(join(tmpdir(), 'kib-cp-'));
  try {
    await runPlaybookIn({ ...options, ansibleDir, controlPathDir });
  } finally {
    await rm(controlPathDir, { recursive: true, force: true });
  }
}

async function runPlaybookIn(options: {
  target: SshTarget;
  playbookPath: string;
  vars: Record<string, unknown>;
  ansibleDir: string;
  controlPathDir: string;
  ansibleLogPath: string;
  signal: AbortSignal;
  reporter: Reporter;
}): Promise<void> {
  const { ansibleDir, reporter, signal } = options;
  const inventoryPath = join(ansibleDir, 'inventory.ini');
  const varsFilePath = join(ansibleDir, 'vars.json');
  const configPath = join(ansibleDir, 'ansible.cfg');
  await writeFile(inventoryPath, renderInventory(options.target));
  await writeFile(varsFilePath, `${JSON.stringify(options.vars, null, 2)}\n`);
  await writeFile(configPath, renderAnsibleConfig({ logPath: options.ansibleLogPath, controlPathDir: options.controlPathDir }));
  const env = ansibleEnv(configPath);

  const listing = await run('ansible-playbook', ansiblePlaybookArgs({ inventoryPath, playbookPath: options.playbookPath, varsFilePath, listTasks: true }), {
    env,
    signal,
    timeoutMs: 120_000,
  });
  const total = countListedTasks(listing.stdout);

  const tracker = new AnsibleOutputTracker();
  reporter.emit({ type: 'step', phase: 'provision', message: `running ${options.playbookPath} (${total} tasks; log: ${options.ansibleLogPath})` });
  const result = await run('ansible-playbook', ansiblePlaybookArgs({ inventoryPath, playbookPath: options.playbookPath, varsFilePath }), {
    env,
    signal,
    allowFailure: true,
    onLine: (_stream, line) => {
      const task = tracker.feed(line);
      reporter.emit({ type: 'log', source: 'ansible', line });
      if (task !== undefined) {
        reporter.emit({ type: 'progress', phase: 'provision', label: 'playbook', done: Math.min(tracker.tasksStarted, total), total: total > 0 ? total : undefined, unit: 'tasks' });
      }
    },
  });
  if (signal.aborted) throw new CancelledError('The build');
  if (result.exitCode !== 0) {
    const details = tracker.failureLines.slice(0, 20).join('\n');
    throw new ProvisionError(`ansible-playbook exited with code ${result.exitCode}${details === '' ? '' : `:\n${details}`}`, tracker.failedTask, options.ansibleLogPath);
  }
}

function formatGiB(bytes: number): string {
  return `${(bytes / 1024 ** 3).toFixed(bytes % 1024 ** 3 === 0 ? 0 : 1)} GiB`;
}
