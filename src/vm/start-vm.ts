import { copyFile, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CancelledError, KibError, TimeoutError, VmExitedError, VmNotRunningError } from '../core/errors.js';
import { exitsWithin, lastLines, spawnDaemon, type DaemonExit, type StartedDaemon } from '../process/index.js';
import { silentReporter, type Reporter } from '../report/events.js';
import { detectAccelerator } from './accelerator.js';
import { FileFollower, readConsoleTail } from './console.js';
import { findOvmf } from './firmware.js';
import { GuestAgentClient } from './guest-agent.js';
import { QEMU_SYSTEM_BINARY, qemuSystemArgs } from './qemu-args.js';
import { QmpClient } from './qmp.js';
import { allocateLoopbackPort, createRunDir, defaultStateDir, type RunDir, type VmOwner } from './run-dir.js';
import type { Accelerator, NetworkMode, VmDisk, VmFirmware, VmNic, VmSpec } from './types.js';
import { describeVmExit } from './wait.js';

/** A NIC as the caller asks for it; user-mode NICs get their SSH port when QEMU starts. */
export type StartVmNic =
  | { kind: 'user'; mode: NetworkMode; macAddress?: string; bootIndex?: number }
  | { kind: 'tap'; ifname: string; macAddress: string; bootIndex?: number };

export interface StartVmSpec {
  name: string;
  diskPath: string;
  diskFormat: 'qcow2' | 'raw';
  /**
   * The main disk's place in the firmware boot order; 1 when absent. `false`: not a boot device
   * (boot from a NIC only). Netboot uses disk 1, NIC 2: a blank disk falls through to PXE.
   */
  diskBootIndex?: number | false;
  /** More virtio disks after the main disk (with their own `bootIndex`, if any). */
  extraDisks?: readonly VmDisk[];
  /** NoCloud or ConfigDrive ISO (see createNoCloudSeed / createConfigDriveSeed). */
  seedPath?: string;
  /** SMBIOS system serial, e.g. `ds=nocloud-net;s=http://10.0.0.1/seed/` for an HTTP seed. */
  smbiosSerial?: string;
  cpus: number;
  memoryMiB: number;
  accelerator: 'auto' | Accelerator;
  firmware: 'bios' | 'uefi';
  /** Shorthand for `nics: [{ kind: 'user', mode: network, macAddress }]`; ignored when `nics` is given. */
  network?: NetworkMode;
  macAddress?: string;
  /** The VM's NICs in order; the first user-mode NIC carries SSH. Default: one user-mode NIC. */
  nics?: readonly StartVmNic[];
  /**
   * Run QEMU inside this network namespace (`ip netns exec`), where its tap NICs live (src/net/).
   * A user-mode NIC's SSH port is then on the namespace's loopback, not the host's.
   */
  netns?: string;
  /** Parent of `runs/<vm-id>/`; `$KIB_STATE_DIR` and friends when absent. */
  stateDir?: string;
  /**
   * A fixed run dir id, kept after the VM stops (a cluster node's state lives there); default: a
   * random id, removed when the VM stops.
   */
  persistentRunId?: string;
  /** Who the VM belongs to (owner.json); the orphan reaper spares VMs of a live cluster. */
  owner?: VmOwner;
  /** Put the serial console log here instead of the run dir, so it outlives the VM (build logs). */
  consoleLogPath?: string;
  /** How long stop() waits for the guest to power off before forcing QEMU down. */
  stopGraceMs?: number;
  /** Start from a saved machine state (QEMU `-incoming`); see restoreVm in snapshot.ts. */
  incoming?: string;
  /** UEFI: copy the variable store from here instead of OVMF's template (a restored VM's own). */
  uefiVarsPath?: string;
}

/** running: QEMU runs (the guest may be paused); stopped: QEMU exited; snapshotted: saved, then QEMU quit. */
export type VmState = 'running' | 'stopped' | 'snapshotted';

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
  /**
   * Port on 127.0.0.1 forwarded to the guest's port 22 by the first user-mode NIC (undefined
   * without one). With `netns` that loopback is the namespace's: reach it from inside (SshTarget.netns).
   */
  readonly sshPort: number | undefined;
  /** The network namespace QEMU runs in; undefined: the host's. */
  readonly netns: string | undefined;
  /** The spec it was started with (a snapshot records it, so the restore has the same devices). */
  readonly spec: StartVmSpec;
  readonly runDir: string;
  readonly consoleLogPath: string;
  /** The QEMU command line, for logs and bug reports. */
  readonly argv: readonly string[];
  readonly exited: Promise<DaemonExit>;
  isRunning(): boolean;
  /**
   * Lets QEMU outlive this process (a cluster node) and closes this handle's sockets; a later kib
   * (or this one) reaches the VM through attachVm.
   */
  detach(): void;
  readonly state: VmState;
  /** Throws VmNotRunningError naming the state unless the VM runs; `command` names what was refused. */
  assertRunning(command: string): void;
  consoleTail(lines?: number): Promise<string>;
  /** The VM's QMP connection (one per VM; QEMU takes a single client). Refused unless running. */
  qmp(): QmpClient;
  /** The guest-agent channel; commands fail with GUEST_AGENT_TIMEOUT until the agent runs. Refused unless running. */
  guestAgent(): GuestAgentClient;
  /**
   * Marks the handle snapshotted (called by saveVmSnapshot once QEMU has quit after saving), so
   * commands are refused with that reason.
   */
  markSnapshotted(statePath: string): void;
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
  const persistent = spec.persistentRunId !== undefined;
  const runDir = await createRunDir(spec.stateDir ?? defaultStateDir(), spec.name, {
    ...(spec.consoleLogPath === undefined ? {} : { consoleLogPath: spec.consoleLogPath }),
    ...(spec.persistentRunId === undefined ? {} : { id: spec.persistentRunId }),
    ...(spec.owner === undefined ? {} : { owner: spec.owner }),
  });
  try {
    const firmware = await prepareFirmware(spec, runDir);
    const diskBootIndex = spec.diskBootIndex === false ? undefined : (spec.diskBootIndex ?? 1);
    for (let attempt = 1; ; attempt += 1) {
      const nics = await resolveNics(spec);
      const sshPort = nics.find((nic) => nic.kind === 'user')?.sshHostPort;
      const vmSpec: VmSpec = {
        name: spec.name,
        disks: [{ path: spec.diskPath, format: spec.diskFormat, ...(diskBootIndex === undefined ? {} : { bootIndex: diskBootIndex }) }, ...(spec.extraDisks ?? [])],
        ...(spec.seedPath === undefined ? {} : { seedPath: spec.seedPath }),
        ...(spec.smbiosSerial === undefined ? {} : { smbiosSerial: spec.smbiosSerial }),
        ...(spec.incoming === undefined ? {} : { incoming: spec.incoming }),
        memoryMiB: spec.memoryMiB,
        cpus: spec.cpus,
        accelerator,
        firmware,
        nics,
        paths: runDir.paths,
      };
      const argv = qemuSystemArgs(vmSpec);
      const where = spec.netns === undefined ? '' : ` in network namespace ${spec.netns}`;
      log(
        `starting ${spec.name}${where}: ${accelerator} (${reason}), ${spec.firmware}, ${spec.cpus} vCPU, ${spec.memoryMiB} MiB, ` +
          `${nics.map(describeNic).join(', ') || 'no NIC'}, run dir ${runDir.dir}`,
      );
      const [command, commandArgs] = qemuCommand(argv, spec.netns);
      log(`${command} ${commandArgs.join(' ')}`, 'debug');
      // `ip netns exec` enters the namespace and then execs QEMU: the pid, the process group and
      // the stop ladder are QEMU's own.
      const daemon = spawnDaemon(command, commandArgs, { stdoutFile: runDir.qemuLogFile, stderrFile: runDir.qemuLogFile });
      let qmp: QmpClient;
      try {
        qmp = await connectQmp(runDir, daemon, options.signal);
      } catch (error) {
        await daemon.stop({ termMs: 2_000 });
        const qemuLog = await readFile(runDir.qemuLogFile, 'utf8').catch(() => '');
        // Another process took the port between our probe and QEMU's bind: try another one.
        if (/host forwarding rule/i.test(qemuLog) && attempt < PORT_ATTEMPTS) {
          log(`port ${String(sshPort)} was taken before QEMU could bind it; trying another`, 'debug');
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
      return new RunningVm({ spec, runDir, daemon, qmp, accelerator, sshPort, argv, reporter, persistent });
    }
  } catch (error) {
    if (!persistent) await rm(runDir.dir, { recursive: true, force: true });
    throw error;
  }
}

/** The user's NICs with a free loopback port for each user-mode NIC's SSH forward. */
async function resolveNics(spec: StartVmSpec): Promise<VmNic[]> {
  const asked: readonly StartVmNic[] = spec.nics ?? [
    { kind: 'user', mode: spec.network ?? 'restricted', ...(spec.macAddress === undefined ? {} : { macAddress: spec.macAddress }) },
  ];
  const nics: VmNic[] = [];
  for (const nic of asked) {
    // In a fresh namespace nothing else listens; a port free on the host's loopback is free there too.
    nics.push(nic.kind === 'user' ? { ...nic, sshHostPort: await allocateLoopbackPort() } : nic);
  }
  return nics;
}

function describeNic(nic: VmNic): string {
  const mac = nic.macAddress === undefined ? '' : ` ${nic.macAddress}`;
  return nic.kind === 'user' ? `user-mode (${nic.mode})${mac} with SSH on 127.0.0.1:${nic.sshHostPort}` : `tap ${nic.ifname}${mac}`;
}

/** QEMU's command, entering a network namespace first when one is named. Pure. */
export function qemuCommand(qemuArgs: readonly string[], netns: string | undefined): [string, string[]] {
  return netns === undefined ? [QEMU_SYSTEM_BINARY, [...qemuArgs]] : ['ip', ['netns', 'exec', netns, QEMU_SYSTEM_BINARY, ...qemuArgs]];
}

async function prepareFirmware(spec: StartVmSpec, runDir: RunDir): Promise<VmFirmware> {
  if (spec.firmware === 'bios') return { type: 'bios' };
  const ovmf = await findOvmf();
  // The variable store is written by the firmware (boot entries): every VM gets its own copy.
  const varsPath = join(runDir.dir, 'OVMF_VARS.fd');
  await copyFile(spec.uefiVarsPath ?? ovmf.varsTemplatePath, varsPath);
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
  readonly sshPort: number | undefined;
  readonly netns: string | undefined;
  readonly spec: StartVmSpec;
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
  readonly #persistent: boolean;
  #stopping: Promise<void> | undefined;
  #snapshotPath: string | undefined;
  #exit: DaemonExit | undefined;

  constructor(init: {
    spec: StartVmSpec;
    runDir: RunDir;
    daemon: StartedDaemon;
    qmp: QmpClient;
    accelerator: Accelerator;
    sshPort: number | undefined;
    argv: readonly string[];
    reporter: Reporter;
    persistent: boolean;
  }) {
    this.id = init.runDir.id;
    this.name = init.spec.name;
    this.pid = init.daemon.pid;
    this.accelerator = init.accelerator;
    this.sshPort = init.sshPort;
    this.netns = init.spec.netns;
    this.spec = init.spec;
    this.#persistent = init.persistent;
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
      this.#exit = exit;
      await this.#console.stop();
      this.#agent.close();
      this.#log(`${this.name} exited (${describeExit(exit)})`);
    });
  }

  isRunning(): boolean {
    return this.#daemon.isRunning();
  }

  detach(): void {
    // QEMU keeps running; this process lets go of it (no exit-hook kill, no open sockets or
    // file watches keeping Node alive). Later commands reach it through attachVm.
    this.#daemon.detach();
    this.#qmp.close();
    this.#agent.close();
    void this.#console.stop();
  }

  consoleTail(lines = 40): Promise<string> {
    return readConsoleTail(this.consoleLogPath, lines);
  }

  get state(): VmState {
    if (this.isRunning()) return 'running';
    return this.#snapshotPath === undefined ? 'stopped' : 'snapshotted';
  }

  assertRunning(command: string): void {
    const state = this.state;
    if (state === 'running') return;
    const detail =
      state === 'snapshotted'
        ? `its memory was saved to ${String(this.#snapshotPath)} and QEMU quit`
        : this.#exit === undefined
          ? 'QEMU has exited'
          : `QEMU ${describeVmExit(this.#exit)}`;
    throw new VmNotRunningError(this.name, state, command, detail);
  }

  markSnapshotted(statePath: string): void {
    this.#snapshotPath = statePath;
  }

  qmp(): QmpClient {
    this.assertRunning('a QMP command');
    return this.#qmp;
  }

  guestAgent(): GuestAgentClient {
    this.assertRunning('a guest-agent command');
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
      // A persistent run dir is the node's state (a cluster's); only the live QEMU's files go.
      if (this.#persistent) {
        await Promise.all(['qemu.pid', 'qmp.sock', 'qga.sock'].map((file) => rm(join(this.runDir, file), { force: true })));
      } else {
        await rm(this.runDir, { recursive: true, force: true });
      }
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
