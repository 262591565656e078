import { copyFile, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CancelledError, KibError, TimeoutError, VmExitedError } from '../core/errors.js';
import { exitsWithin, lastLines, spawnDaemon, type DaemonExit, type StartedDaemon } from '../process/index.js';
import { silentReporter, type Reporter } from '../report/events.js';
import { detectAccelerator } from './accelerator.js';
import { FileFollower, readConsoleTail } from './console.js';
import { findOvmf } from './firmware.js';
import { GuestAgentClient } from './guest-agent.js';
import { QEMU_SYSTEM_BINARY, qemuSystemArgs } from './qemu-args.js';
import { QmpClient } from './qmp.js';
import { allocateLoopbackPort, createRunDir, defaultStateDir, type RunDir } from './run-dir.js';
import type { Accelerator, NetworkMode, VmDisk, VmFirmware, VmSpec } from './types.js';

export interface StartVmSpec {
  name: string;
  diskPath: string;
  diskFormat: 'qcow2' | 'raw';
  /** More virtio disks after the boot disk. */
  extraDisks?: readonly VmDisk[];
  /** NoCloud or ConfigDrive ISO (see createNoCloudSeed / createConfigDriveSeed). */
  seedPath?: string;
  cpus: number;
  memoryMiB: number;
  accelerator: 'auto' | Accelerator;
  firmware: 'bios' | 'uefi';
  network: NetworkMode;
  macAddress?: string;
  /** Parent of `runs/<vm-id>/`; `$KIB_STATE_DIR` and friends when absent. */
  stateDir?: string;
  /** Put the serial console log here instead of the run dir, so it outlives the VM (build logs). */
  consoleLogPath?: string;
  /** How long stop() waits for the guest to power off before forcing QEMU down. */
  stopGraceMs?: number;
}

export interface StartVmOptions {
  signal?: AbortSignal;
  reporter?: Reporter;
}

export interface VmStopOptions {
  /** How long the guest gets to power off after the request; 0 skips straight to QMP quit. */
  graceMs?: number;
}

/** A running VM. Hold it with `await using`: disposal stops QEMU and removes the run dir. */
export interface StartedVm extends AsyncDisposable {
  readonly id: string;
  readonly name: string;
  readonly pid: number;
  readonly accelerator: Accelerator;
  /** Host port on 127.0.0.1 forwarded to the guest's port 22. */
  readonly sshPort: number;
  readonly runDir: string;
  readonly consoleLogPath: string;
  /** The QEMU command line, for logs and bug reports. */
  readonly argv: readonly string[];
  readonly exited: Promise<DaemonExit>;
  isRunning(): boolean;
  consoleTail(lines?: number): Promise<string>;
  /** The VM's QMP connection (one per VM; QEMU takes a single client). */
  qmp(): QmpClient;
  /** The guest-agent channel; commands fail with GUEST_AGENT_TIMEOUT until the agent runs. */
  guestAgent(): GuestAgentClient;
  /** ACPI power button (QMP system_powerdown), then waits for QEMU to exit. */
  powerDown(options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<DaemonExit>;
  /** Waits for QEMU to exit by itself (a guest that powers off). */
  waitForExit(options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<DaemonExit>;
  /**
   * guest-agent shutdown (or ACPI power-down) → wait → QMP quit → SIGTERM → SIGKILL, then the run
   * dir is removed. Idempotent and safe to call concurrently.
   */
  stop(options?: VmStopOptions): Promise<void>;
}

const QMP_CONNECT_TIMEOUT_MS = 30_000;
const PORT_ATTEMPTS = 5;
const DEFAULT_STOP_GRACE_MS = 20_000;
const QUIT_WAIT_MS = 5_000;
const TERM_WAIT_MS = 5_000;

/**
 * Boots a VM under QEMU: a run dir under `<state>/runs/<vm-id>/` (owner.json, pidfile, QMP and
 * guest-agent sockets, console log), a free loopback port forwarded to SSH, and QEMU in its own
 * process group. Returns once QEMU answers on QMP; the guest is then still booting.
 */
export async function startVm(spec: StartVmSpec, options: StartVmOptions = {}): Promise<StartedVm> {
  const reporter = options.reporter ?? silentReporter;
  const log = (line: string, level: 'debug' | 'info' | 'warn' = 'info'): void =>
    reporter.emit({ type: 'log', source: 'vm', line, level });
  if (options.signal?.aborted === true) throw new CancelledError(`Starting VM ${spec.name}`);

  const { accelerator, reason } = await detectAccelerator(spec.accelerator);
  const runDir = await createRunDir(spec.stateDir ?? defaultStateDir(), spec.name, spec.consoleLogPath);
  try {
    const firmware = await prepareFirmware(spec.firmware, runDir);
    for (let attempt = 1; ; attempt += 1) {
      const sshPort = await allocateLoopbackPort();
      const vmSpec: VmSpec = {
        name: spec.name,
        disks: [{ path: spec.diskPath, format: spec.diskFormat }, ...(spec.extraDisks ?? [])],
        ...(spec.seedPath === undefined ? {} : { seedPath: spec.seedPath }),
        memoryMiB: spec.memoryMiB,
        cpus: spec.cpus,
        accelerator,
        firmware,
        network: spec.network,
        ...(spec.macAddress === undefined ? {} : { macAddress: spec.macAddress }),
        sshHostPort: sshPort,
        paths: runDir.paths,
      };
      const argv = qemuSystemArgs(vmSpec);
      log(
        `starting ${spec.name}: ${accelerator} (${reason}), ${spec.firmware}, ${spec.cpus} vCPU, ${spec.memoryMiB} MiB, ` +
          `SSH on 127.0.0.1:${sshPort}, run dir ${runDir.dir}`,
      );
      log(`${QEMU_SYSTEM_BINARY} ${argv.join(' ')}`, 'debug');
      const daemon = spawnDaemon(QEMU_SYSTEM_BINARY, argv, { stdoutFile: runDir.qemuLogFile, stderrFile: runDir.qemuLogFile });
      let qmp: QmpClient;
      try {
        qmp = await connectQmp(runDir, daemon, options.signal);
      } catch (error) {
        await daemon.stop({ termMs: 2_000 });
        const qemuLog = await readFile(runDir.qemuLogFile, 'utf8').catch(() => '');
        // Another process took the port between our probe and QEMU's bind: try another one.
        if (/host forwarding rule/i.test(qemuLog) && attempt < PORT_ATTEMPTS) {
          log(`port ${sshPort} was taken before QEMU could bind it; trying another`, 'debug');
          await rm(runDir.qemuLogFile, { force: true });
          continue;
        }
        if (error instanceof CancelledError) throw error;
        if (!daemon.isRunning() && qemuLog.trim() !== '') {
          const exit = await daemon.exited;
          throw new VmExitedError(
            `QEMU for ${spec.name} exited at start (${describeExit(exit)}):\n${lastLines(qemuLog, 20)}`,
            await readConsoleTail(runDir.paths.consoleLog),
            runDir.paths.consoleLog,
          );
        }
        throw error;
      }
      for (const line of (await readFile(runDir.qemuLogFile, 'utf8').catch(() => '')).split('\n')) {
        if (line.trim() !== '') log(`qemu: ${line}`, 'warn');
      }
      log(`QEMU pid ${daemon.pid} is up; console log ${runDir.paths.consoleLog}`);
      return new RunningVm({ spec, runDir, daemon, qmp, accelerator, sshPort, argv, reporter });
    }
  } catch (error) {
    await rm(runDir.dir, { recursive: true, force: true });
    throw error;
  }
}

async function prepareFirmware(firmware: 'bios' | 'uefi', runDir: RunDir): Promise<VmFirmware> {
  if (firmware === 'bios') return { type: 'bios' };
  const ovmf = await findOvmf();
  // The variable store is written by the firmware (boot entries): every VM gets its own copy.
  const varsPath = join(runDir.dir, 'OVMF_VARS.fd');
  await copyFile(ovmf.varsTemplatePath, varsPath);
  return { type: 'uefi', codePath: ovmf.codePath, varsPath };
}

/** Connects to QMP once QEMU has created the socket, failing fast if QEMU exits first. */
async function connectQmp(runDir: RunDir, daemon: StartedDaemon, signal: AbortSignal | undefined): Promise<QmpClient> {
  const attempt = new AbortController();
  const connecting = QmpClient.connect(runDir.paths.qmpSocket, { timeoutMs: QMP_CONNECT_TIMEOUT_MS, signal: attempt.signal });
  const failed = daemon.exited.then(() => {
    throw new KibError('QEMU_EXITED', 'QEMU exited before its QMP socket answered');
  });
  let onAbort: (() => void) | undefined;
  const cancelled = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(new CancelledError('Starting the VM'));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
  failed.catch(() => {});
  cancelled.catch(() => {});
  try {
    return await Promise.race([connecting, failed, cancelled]);
  } catch (error) {
    attempt.abort();
    connecting.then((client) => client.close()).catch(() => {});
    throw error;
  } finally {
    if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
  }
}

function describeExit(exit: DaemonExit): string {
  return exit.signal !== null ? `killed by ${exit.signal}` : `exit code ${String(exit.exitCode)}`;
}

class RunningVm implements StartedVm {
  readonly id: string;
  readonly name: string;
  readonly pid: number;
  readonly accelerator: Accelerator;
  readonly sshPort: number;
  readonly runDir: string;
  readonly consoleLogPath: string;
  readonly argv: readonly string[];
  readonly exited: Promise<DaemonExit>;
  readonly #daemon: StartedDaemon;
  readonly #qmp: QmpClient;
  readonly #agent: GuestAgentClient;
  readonly #reporter: Reporter;
  readonly #console: FileFollower;
  readonly #stopGraceMs: number;
  #stopping: Promise<void> | undefined;

  constructor(init: {
    spec: StartVmSpec;
    runDir: RunDir;
    daemon: StartedDaemon;
    qmp: QmpClient;
    accelerator: Accelerator;
    sshPort: number;
    argv: readonly string[];
    reporter: Reporter;
  }) {
    this.id = init.runDir.id;
    this.name = init.spec.name;
    this.pid = init.daemon.pid;
    this.accelerator = init.accelerator;
    this.sshPort = init.sshPort;
    this.runDir = init.runDir.dir;
    this.consoleLogPath = init.runDir.paths.consoleLog;
    this.argv = init.argv;
    this.#daemon = init.daemon;
    this.#qmp = init.qmp;
    this.#agent = new GuestAgentClient(init.runDir.paths.guestAgentSocket);
    this.#reporter = init.reporter;
    this.#stopGraceMs = init.spec.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
    this.#console = new FileFollower(this.consoleLogPath, (line) =>
      this.#reporter.emit({ type: 'log', source: 'console', line, level: 'debug' }),
    );
    this.#console.start();
    this.exited = init.daemon.exited;
    void this.exited.then(async (exit) => {
      await this.#console.stop();
      this.#agent.close();
      this.#log(`${this.name} exited (${describeExit(exit)})`);
    });
  }

  isRunning(): boolean {
    return this.#daemon.isRunning();
  }

  consoleTail(lines = 40): Promise<string> {
    return readConsoleTail(this.consoleLogPath, lines);
  }

  qmp(): QmpClient {
    return this.#qmp;
  }

  guestAgent(): GuestAgentClient {
    return this.#agent;
  }

  async powerDown(options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<DaemonExit> {
    if (this.isRunning()) {
      this.#log(`asking ${this.name} to power off (ACPI power button)`);
      await this.#qmp.execute('system_powerdown');
    }
    return await this.waitForExit({ ...options, what: `${this.name} powering off after the ACPI power button` });
  }

  async waitForExit(options: { timeoutMs?: number; signal?: AbortSignal; what?: string } = {}): Promise<DaemonExit> {
    const { signal } = options;
    const what = options.what ?? `${this.name} powering off`;
    if (signal?.aborted === true) throw new CancelledError(`Waiting for ${what}`);
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      return await Promise.race([
        this.exited,
        new Promise<never>((_resolve, reject) => {
          if (options.timeoutMs !== undefined) {
            const timeoutMs = options.timeoutMs;
            timer = setTimeout(() => {
              void this.consoleTail(15).then((tail) =>
                reject(new TimeoutError(what, timeoutMs, `The VM's serial console log is ${this.consoleLogPath}; its last lines:\n${tail}`)),
              );
            }, timeoutMs);
          }
          onAbort = () => reject(new CancelledError(`Waiting for ${what}`));
          signal?.addEventListener('abort', onAbort, { once: true });
        }),
      ]);
    } finally {
      clearTimeout(timer);
      if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
    }
  }

  stop(options: VmStopOptions = {}): Promise<void> {
    this.#stopping ??= this.#stop(options.graceMs ?? this.#stopGraceMs);
    return this.#stopping;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  async #stop(graceMs: number): Promise<void> {
    try {
      if (this.isRunning()) {
        this.#log(`stopping ${this.name}`);
        const exit = await this.#daemon.stop({
          graceful: () => this.#shutdownGracefully(graceMs),
          graceMs: graceMs + QUIT_WAIT_MS,
          termMs: TERM_WAIT_MS,
        });
        this.#log(`${this.name} stopped (${describeExit(exit)})`);
      }
    } finally {
      this.#qmp.close();
      this.#agent.close();
      await this.#console.stop();
      await rm(this.runDir, { recursive: true, force: true });
    }
  }

  /** Power-off request, a wait, then QMP quit; the daemon's ladder takes over if QEMU is still up. */
  async #shutdownGracefully(graceMs: number): Promise<void> {
    if (graceMs > 0) {
      let asked = false;
      if (this.#agent.hasAnswered) {
        asked = await this.#agent
          .execute('guest-shutdown', { mode: 'powerdown' }, { timeoutMs: 3_000 })
          .then(() => true)
          .catch(() => false);
      }
      if (!asked) await this.#qmp.execute('system_powerdown', undefined, { timeoutMs: 3_000 }).catch(() => {});
      if (await exitsWithin(this.exited, graceMs)) return;
      this.#log(`${this.name} did not power off within ${graceMs} ms; quitting QEMU`, 'warn');
    }
    // QEMU answers quit and then exits; the socket may close before the answer arrives.
    await this.#qmp.execute('quit', undefined, { timeoutMs: QUIT_WAIT_MS }).catch(() => {});
  }

  #log(line: string, level: 'debug' | 'info' | 'warn' = 'info'): void {
    this.#reporter.emit({ type: 'log', source: 'vm', line, level });
  }
}
