import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CancelledError, KibError, TimeoutError, VmNotRunningError } from '../core/errors.js';
import { exitsWithin, isProcessRunning, type DaemonExit } from '../process/index.js';
import { silentReporter, type Reporter } from '../report/events.js';
import { readConsoleTail } from './console.js';
import { GuestAgentClient } from './guest-agent.js';
import { QmpClient } from './qmp.js';
import { isQemuOf, killAndWait } from './reap.js';
import { QEMU_PID_FILE } from './run-dir.js';
import type { StartedVm, StartVmSpec, VmState, VmStopOptions } from './start-vm.js';
import type { Accelerator } from './types.js';

export interface AttachVmSpec {
  /** The VM's run dir (`<state>/runs/<id>/`), where its pidfile and sockets are. */
  runDir: string;
  /** The spec it was started with (a cluster keeps it in its state file). */
  spec: StartVmSpec;
  accelerator: Accelerator;
  sshPort?: number;
  reporter?: Reporter;
}

const POLL_MS = 200;
const QMP_TIMEOUT_MS = 10_000;

/**
 * A handle on a QEMU that another kib process started and detached (a cluster node): the same
 * StartedVm interface, found through the run dir's pidfile and sockets. The process is checked to
 * be a QEMU of that run dir before anything is sent to it; its exit is seen by polling /proc,
 * since it is not our child, so no exit code is known (reported as exit code null).
 */
export async function attachVm(init: AttachVmSpec): Promise<StartedVm> {
  const pidText = await readFile(join(init.runDir, QEMU_PID_FILE), 'utf8').catch(() => '');
  const pid = Number(pidText.trim());
  if (!Number.isInteger(pid) || pid <= 0 || !isQemuOf(pid, init.runDir)) {
    throw new KibError('VM_NOT_RUNNING', `${init.spec.name} is not running: no QEMU of run dir ${init.runDir} (pidfile ${pidText.trim() === '' ? 'missing' : `says ${pidText.trim()}`})`);
  }
  const qmp = await QmpClient.connect(join(init.runDir, 'qmp.sock'), { timeoutMs: QMP_TIMEOUT_MS });
  return new AttachedVm(init, pid, qmp);
}

class AttachedVm implements StartedVm {
  readonly id: string;
  readonly name: string;
  readonly pid: number;
  readonly accelerator: Accelerator;
  readonly sshPort: number | undefined;
  readonly netns: string | undefined;
  readonly spec: StartVmSpec;
  readonly runDir: string;
  readonly consoleLogPath: string;
  readonly argv: readonly string[] = [];
  readonly exited: Promise<DaemonExit>;
  readonly #qmp: QmpClient;
  readonly #agent: GuestAgentClient;
  readonly #reporter: Reporter;
  readonly #watch = new AbortController();
  #gone = false;
  #snapshotPath: string | undefined;
  #stopping: Promise<void> | undefined;

  constructor(init: AttachVmSpec, pid: number, qmp: QmpClient) {
    this.runDir = init.runDir;
    this.id = init.runDir.split('/').at(-1) ?? init.spec.name;
    this.name = init.spec.name;
    this.pid = pid;
    this.accelerator = init.accelerator;
    this.sshPort = init.sshPort;
    this.netns = init.spec.netns;
    this.spec = init.spec;
    this.consoleLogPath = init.spec.consoleLogPath ?? join(init.runDir, 'console.log');
    this.#qmp = qmp;
    this.#agent = new GuestAgentClient(join(init.runDir, 'qga.sock'));
    this.#reporter = init.reporter ?? silentReporter;
    this.exited = this.#watchExit(pid);
  }

  async #watchExit(pid: number): Promise<DaemonExit> {
    {
      while (isProcessRunning(pid)) {
        try {
          await sleep(POLL_MS, undefined, { signal: this.#watch.signal });
        } catch {
          break;
        }
      }
      this.#gone = true;
      this.#qmp.close();
      this.#agent.close();
      return { exitCode: null, signal: null };
    }
  }

  isRunning(): boolean {
    return !this.#gone && isProcessRunning(this.pid);
  }

  detach(): void {
    // Not our child: it already outlives us.
  }

  get state(): VmState {
    if (this.isRunning()) return 'running';
    return this.#snapshotPath === undefined ? 'stopped' : 'snapshotted';
  }

  assertRunning(command: string): void {
    const state = this.state;
    if (state === 'running') return;
    throw new VmNotRunningError(this.name, state, command, state === 'snapshotted' ? `its memory was saved to ${String(this.#snapshotPath)} and QEMU quit` : 'QEMU has exited');
  }

  consoleTail(lines = 40): Promise<string> {
    return readConsoleTail(this.consoleLogPath, lines);
  }

  qmp(): QmpClient {
    this.assertRunning('a QMP command');
    return this.#qmp;
  }

  guestAgent(): GuestAgentClient {
    this.assertRunning('a guest-agent command');
    return this.#agent;
  }

  markSnapshotted(statePath: string): void {
    this.#snapshotPath = statePath;
  }

  async powerDown(options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<DaemonExit> {
    if (this.isRunning()) await this.#qmp.execute('system_powerdown');
    return await this.waitForExit(options);
  }

  async waitForExit(options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<DaemonExit> {
    if (options.signal?.aborted === true) throw new CancelledError(`Waiting for ${this.name} to exit`);
    if (options.timeoutMs === undefined) return await this.exited;
    if (await exitsWithin(this.exited, options.timeoutMs)) return await this.exited;
    throw new TimeoutError(`${this.name} powering off`, options.timeoutMs);
  }

  stop(options: VmStopOptions = {}): Promise<void> {
    this.#stopping ??= this.#stop(options.graceMs ?? 0);
    return this.#stopping;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#watch.abort();
    this.#qmp.close();
    this.#agent.close();
    await this.exited;
  }

  /** Closes the sockets and stops watching; QEMU keeps running. */
  release(): Promise<void> {
    return this[Symbol.asyncDispose]();
  }

  async #stop(graceMs: number): Promise<void> {
    if (this.isRunning()) {
      this.#reporter.emit({ type: 'log', source: 'vm', line: `stopping ${this.name} (pid ${this.pid})` });
      if (graceMs > 0) {
        await this.#qmp.execute('system_powerdown', undefined, { timeoutMs: 3_000 }).catch(() => {});
        await exitsWithin(this.exited, graceMs);
      }
      if (this.isRunning()) await this.#qmp.execute('quit', undefined, { timeoutMs: 3_000 }).catch(() => {});
      if (!(await exitsWithin(this.exited, 5_000)) && isQemuOf(this.pid, this.runDir)) await killAndWait(this.pid);
    }
    this.#watch.abort();
    this.#qmp.close();
    this.#agent.close();
    await this.exited;
    await Promise.all(['qemu.pid', 'qmp.sock', 'qga.sock'].map((file) => rm(join(this.runDir, file), { force: true })));
  }
}
