import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CancelledError, KibError, ProvisionError, throwIfAborted } from '../core/errors.js';
import type { BaseImage, DiskImage } from '../core/types.js';
import type { LayerBacking, LayerStore } from '../layers/index.js';
import type { Reporter } from '../report/events.js';
import { run } from '../process/index.js';
import { openSshMaster, sshExec, type SshMaster, type SshTarget } from '../ssh/index.js';
import { bootGuest, whileVmRuns, type StartedGuest } from '../vm/index.js';
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
import { freezeLayer } from './freeze-layer.js';
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

/** One provisioning stage as the build plans it: the playbook tags it runs and the key of its result. */
export interface PlannedStage {
  name: string;
  tags: readonly string[];
  key: string;
  /** What the key is a hash of; stored beside the stage's layer. */
  keyDocument: unknown;
}

/** Where a build starts: on the base image, or on the stored layer of a stage that hit. */
export type ProvisionStart = { kind: 'base' } | { kind: 'layer'; stage: string; key: string; path: string };

export interface ProvisionResult {
  disk: DiskImage;
  inventory: GuestInventory;
  ansibleLogPath: string;
  consoleLogPath: string;
  /** Wall time of the steps inside the phase, for the manifest and the benchmark. */
  stepsMs: { boot: number; cloudInit: number; playbook: number; layers: number; seal: number };
}

export interface ProvisionOptions {
  workDir: string;
  logDir: string;
  stateDir: string;
  signal: AbortSignal;
  reporter: Reporter;
}

/**
 * The provision phase, stage by stage: boot the build VM on an overlay of `start` (the base, or
 * the layer of the last stage that hit in the layer store), run each remaining stage with its tags,
 * freeze the disk after every stage but the last into a layer stored under the stage's key, then
 * seal and power off. The sealed overlay is the disk the export phase reads. Emits `stage-start`
 * and `stage-end` for every stage, hits included, so the event stream shows what ran.
 */
export async function provisionStages(
  spec: ProvisionSpec,
  plan: { stages: readonly PlannedStage[]; start: ProvisionStart; layers: LayerStore },
  options: ProvisionOptions,
): Promise<ProvisionResult> {
  const { reporter } = options;
  const firstToRun = plan.start.kind === 'base' ? 0 : plan.stages.findIndex((s) => s.name === (plan.start as { stage: string }).stage) + 1;
  if (firstToRun <= 0 && plan.start.kind === 'layer') throw new KibError('PROVISION_PLAN_INVALID', `The build starts from the layer of stage '${plan.start.stage}', which is not one of the planned stages`);
  if (firstToRun >= plan.stages.length) throw new KibError('PROVISION_PLAN_INVALID', 'Every stage would come from the layer store, but the last stage (seal) never does');
  for (const stage of plan.stages.slice(0, firstToRun)) {
    reporter.emit({ type: 'stage-start', stage: stage.name, key: stage.key, hit: true });
    reporter.emit({ type: 'stage-end', stage: stage.name, durationMs: 0, layer: stage.key });
  }

  await using session = await openProvisionSession(spec, plan.start, options);
  let backing: LayerBacking = plan.start.kind === 'layer' ? { kind: 'layer', key: plan.start.key } : { kind: 'file', path: spec.base.path, sha256: spec.base.sha256 };
  const stages = plan.stages.slice(firstToRun);
  for (const [index, stage] of stages.entries()) {
    reporter.emit({ type: 'stage-start', stage: stage.name, key: stage.key, hit: false });
    const started = performance.now();
    await session.runStage(stage);
    let layer: string | null = null;
    if (index < stages.length - 1) {
      await session.storeLayer(stage, backing, plan.layers);
      backing = { kind: 'layer', key: stage.key };
      layer = stage.key;
    }
    reporter.emit({ type: 'stage-end', stage: stage.name, durationMs: Math.max(1, Math.round(performance.now() - started)), layer });
  }
  return await session.seal();
}

/**
 * A running build VM with a root shell kept open: the steps of provisioning, each its own call,
 * so the build decides which stages run and where layers are cut. Dispose it (`await using`) to
 * stop the VM on any failure.
 */
export class ProvisionSession implements AsyncDisposable {
  readonly #spec: ProvisionSpec;
  readonly #options: ProvisionOptions;
  readonly #guest: StartedGuest;
  readonly #master: SshMaster;
  /** The file the VM writes to now: the boot overlay, then each new overlay a freeze starts. */
  #activePath: string;
  #freezes = 0;
  #playbookMs = 0;
  #layersMs = 0;
  readonly #inventoryDest: string;
  readonly ansibleLogPath: string;

  constructor(spec: ProvisionSpec, options: ProvisionOptions, guest: StartedGuest, master: SshMaster) {
    this.#spec = spec;
    this.#options = options;
    this.#guest = guest;
    this.#master = master;
    this.#activePath = guest.disk.path;
    this.ansibleLogPath = join(options.logDir, 'ansible.log');
    this.#inventoryDest = join(options.workDir, 'inventory.json');
  }

  /** Runs one stage: `ansible-playbook --tags <stage>` (the `always` roles run with every stage). */
  async runStage(stage: PlannedStage): Promise<void> {
    const { signal, reporter, workDir } = this.#options;
    const started = performance.now();
    const target = this.#guest.requireSsh();
    // A VM that dies mid-playbook is reported as dead (signal or exit code, console tail) ahead of
    // Ansible's UNREACHABLE, which is only the symptom.
    await whileVmRuns(
      this.#guest.vm,
      (playbookSignal) =>
        runPlaybook({
          target,
          playbookPath: this.#spec.playbookPath,
          vars: { ...this.#spec.vars, kib_build_user: BUILD_USER, kib_inventory_local_path: this.#inventoryDest },
          tags: stage.tags,
          workDir,
          ansibleLogPath: this.ansibleLogPath,
          signal: playbookSignal,
          reporter,
        }),
      { what: `running stage ${stage.name} of the playbook (Ansible log: ${this.ansibleLogPath})`, signal },
    );
    this.#playbookMs += performance.now() - started;
  }

  /**
   * Freezes the disk as it is after `stage` (see freezeLayer: the build user is taken off the disk
   * first, and the VM goes on writing to a new overlay) and stores the frozen file as the stage's
   * layer. The layer store copies it; the frozen file stays below the running overlay.
   */
  async storeLayer(stage: PlannedStage, backing: LayerBacking, layers: LayerStore): Promise<void> {
    const { signal, reporter, workDir } = this.#options;
    const started = performance.now();
    this.#freezes += 1;
    const nextPath = join(workDir, `kib-build.${this.#freezes}.qcow2`);
    const frozen = await freezeLayer({ vm: this.#guest.vm, target: this.#master.target, user: BUILD_USER, activePath: this.#activePath, nextPath, signal, reporter });
    this.#activePath = nextPath;
    const entry = await layers.put({ key: stage.key, stage: stage.name, sourcePath: frozen, keyDocument: stage.keyDocument, backing, signal });
    reporter.emit({ type: 'step', phase: 'provision', message: `stored the ${stage.name} layer ${stage.key.slice(0, 12)} (${(entry.meta.sizeBytes / 1024 ** 2).toFixed(0)} MiB)` });
    this.#layersMs += performance.now() - started;
  }

  /** Removes the build user, trims free space and powers off; returns the sealed disk. */
  async seal(): Promise<ProvisionResult> {
    const { signal, reporter } = this.#options;
    const vm = this.#guest.vm;
    const inventory = parseGuestInventory(await readFile(this.#inventoryDest, 'utf8').catch(() => {
      throw new ProvisionError('The playbook did not deliver the guest inventory (/var/lib/kib/inventory.json)', undefined, this.ansibleLogPath);
    }));
    reporter.emit({ type: 'step', phase: 'provision', message: 'removing the build user, trimming free space and powering off' });
    const sealStarted = performance.now();
    const sealed = await sshExec(this.#master.target, 'sudo /bin/sh -s', { input: renderFinalSealScript(BUILD_USER), timeoutMs: 600_000, signal, allowFailure: true });
    for (const line of `${sealed.stdout}\n${sealed.stderr}`.split('\n')) if (line.trim() !== '') reporter.emit({ type: 'log', source: 'seal', line });
    if (sealed.exitCode !== 0 && sealed.exitCode !== 255) {
      throw new ProvisionError(`The final seal step (remove the build user, fstrim, power off) exited with code ${sealed.exitCode}: ${sealed.stderr.trim()}`, undefined, this.ansibleLogPath);
    }
    if (sealed.exitCode === 255 && !/trimmed/.test(sealed.stdout)) {
      // 255 is ssh's own failure; once the power-off has started it may also just be the connection closing.
      throw new ProvisionError(`Could not run the final seal step over SSH: ${sealed.stderr.trim()}`, undefined, this.ansibleLogPath);
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
      // After a freeze the VM wrote to a new overlay: the top of the chain is the sealed disk.
      disk: { ...this.#guest.disk, path: this.#activePath, format: 'qcow2' },
      inventory,
      ansibleLogPath: this.ansibleLogPath,
      consoleLogPath: vm.consoleLogPath,
      stepsMs: { boot: this.#guest.bootMs, cloudInit: this.#guest.cloudInitMs, playbook: this.#playbookMs, layers: this.#layersMs, seal: sealMs },
    };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.#master.close();
    } finally {
      await this.#guest[Symbol.asyncDispose]();
    }
  }
}

/**
 * Boots the build VM on a qcow2 overlay of `start` with a NoCloud seed that carries an ephemeral
 * key (a new instance-id every time, so cloud-init creates the build user also on a layer), waits
 * for cloud-init, and opens the SSH master connection.
 */
export async function openProvisionSession(spec: ProvisionSpec, start: ProvisionStart, options: ProvisionOptions): Promise<ProvisionSession> {
  const { workDir, logDir, signal, reporter } = options;
  const step = (message: string): void => reporter.emit({ type: 'step', phase: 'provision', message });
  await mkdir(workDir, { recursive: true });

  // The message starts with "booting the build VM": bench/lib/timings.mjs finds the boot step by it.
  step(
    `booting the build VM (${spec.vm.accelerator}, ${spec.vm.cpus} vCPU, ${spec.vm.memoryMiB} MiB, ${spec.vm.firmware}) on a ${formatGiB(spec.diskSizeBytes)} overlay of ${start.kind === 'base' ? 'the base image' : `the ${start.stage} layer ${start.key.slice(0, 12)}`}`,
  );
  const guest = await bootGuest(
    {
      name: 'kib-build',
      workDir,
      // Kept: the sealed overlay is what the export phase reads.
      disk:
        start.kind === 'base'
          ? { kind: 'overlay', basePath: spec.base.path, baseFormat: spec.base.format, sizeBytes: spec.diskSizeBytes, keep: true }
          : { kind: 'overlay', basePath: start.path, baseFormat: 'qcow2', sizeBytes: spec.diskSizeBytes, keep: true },
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
  try {
    // Opened before the playbook: after the seal role removes the SSH host keys, sshd accepts no
    // new connection, and the final step still needs a root shell. Freezing a layer also runs
    // through it while the build user is off the disk.
    const master = await openSshMaster(guest.requireSsh(), { signal });
    return new ProvisionSession(spec, options, guest, master);
  } catch (error) {
    await guest[Symbol.asyncDispose]();
    throw error;
  }
}

/** Runs ansible-playbook against the build VM, streaming task names as progress. */
export async function runPlaybook(options: {
  target: SshTarget;
  playbookPath: string;
  vars: Record<string, unknown>;
  /** Only the tasks with these tags (and `always`); absent: the whole playbook. */
  tags?: readonly string[];
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
  tags?: readonly string[];
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

  const tags = options.tags === undefined ? {} : { tags: options.tags };
  const listing = await run('ansible-playbook', ansiblePlaybookArgs({ inventoryPath, playbookPath: options.playbookPath, varsFilePath, listTasks: true, ...tags }), {
    env,
    signal,
    timeoutMs: 120_000,
  });
  const total = countListedTasks(listing.stdout);

  const tracker = new AnsibleOutputTracker();
  const what = options.tags === undefined ? '' : ` --tags ${options.tags.join(',')}`;
  reporter.emit({ type: 'step', phase: 'provision', message: `running ${options.playbookPath}${what} (${total} tasks; log: ${options.ansibleLogPath})` });
  const result = await run('ansible-playbook', ansiblePlaybookArgs({ inventoryPath, playbookPath: options.playbookPath, varsFilePath, ...tags }), {
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
