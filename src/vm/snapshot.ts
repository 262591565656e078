import { copyFile, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { KibError, TimeoutError } from '../core/errors.js';
import { silentReporter, type Reporter } from '../report/events.js';
import { shellQuote } from '../ssh/args.js';
import { createOverlay } from './disks.js';
import { GuestAgentError } from './guest-agent.js';
import { startVm, type StartedVm, type StartVmSpec } from './start-vm.js';
import { waitForReady, whileVmRuns } from './wait.js';

export const SNAPSHOT_FILE = 'snapshot.json';
export const SNAPSHOT_FORMAT_VERSION = 1;

/**
 * A saved VM: its memory and device state, plus the disk as it was at that moment. The disk is
 * frozen from then on — a restore puts a new overlay on it, never writes to it — and the devices
 * (MAC, RAM, machine type, seed) are recorded so the restored QEMU matches the one that saved.
 */
export interface VmSnapshot {
  formatVersion: typeof SNAPSHOT_FORMAT_VERSION;
  vmName: string;
  savedAt: string;
  /** The migration stream (`exec:` output of QEMU's migrate). */
  statePath: string;
  compression: 'zstd' | 'none';
  stateSizeBytes: number;
  /** The frozen disk; restores put their overlays on it. */
  diskPath: string;
  diskFormat: 'qcow2' | 'raw';
  /** The start spec the VM ran with, minus what belongs to one run (console log, incoming). */
  startSpec: StartVmSpec;
  /** UEFI: the variable store as it was (boot entries the firmware made). */
  uefiVarsPath?: string;
}

export interface SaveSnapshotOptions {
  /** Where the state (and snapshot.json) go; made if missing. */
  dir: string;
  /** zstd -1: about a third of the raw size for little time (needs zstd on the host). Default: true. */
  compress?: boolean;
  timeoutMs?: number;
  signal?: AbortSignal;
  reporter?: Reporter;
}

/**
 * Saves a running VM's memory over QMP (stop → migrate to `exec:zstd -1 > FILE` → poll
 * query-migrate → quit) and leaves the handle snapshotted: it refuses commands from then on.
 * Writes `snapshot.json` beside the state, so another process can restore it.
 */
export async function saveVmSnapshot(vm: StartedVm, options: SaveSnapshotOptions): Promise<VmSnapshot> {
  const reporter = options.reporter ?? silentReporter;
  const compress = options.compress ?? true;
  const timeoutMs = options.timeoutMs ?? 300_000;
  vm.assertRunning('a snapshot');
  await mkdir(options.dir, { recursive: true });
  const statePath = join(options.dir, compress ? 'memory.zst' : 'memory.bin');
  await rm(statePath, { force: true });
  const qmp = vm.qmp();
  const started = performance.now();

  await whileVmRuns(
    vm,
    async (signal) => {
      await qmp.execute('stop');
      // The default bandwidth cap (128 MiB/s) only slows a local save of a stopped guest.
      await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 64 * 1024 ** 3 });
      // QEMU runs exec: URIs with /bin/sh -c, hence the quoting.
      await qmp.execute('migrate', { uri: compress ? `exec:zstd -q -1 > ${shellQuote(statePath)}` : `exec:cat > ${shellQuote(statePath)}` });
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const info = await qmp.execute<{ status?: string; 'error-desc'?: string }>('query-migrate');
        if (info.status === 'completed') return;
        if (info.status === 'failed' || info.status === 'cancelled') {
          throw new KibError('SNAPSHOT_FAILED', `Saving ${vm.name}'s memory to ${statePath} ${info.status}: ${info['error-desc'] ?? 'no reason given'}`);
        }
        if (Date.now() > deadline) throw new TimeoutError(`Saving ${vm.name}'s memory to ${statePath}`, timeoutMs);
        await sleep(100, undefined, { signal });
      }
    },
    { what: `saving its memory to ${statePath}`, ...(options.signal === undefined ? {} : { signal: options.signal }) },
  );

  let uefiVarsPath: string | undefined;
  if (vm.spec.firmware === 'uefi') {
    uefiVarsPath = join(options.dir, 'OVMF_VARS.fd');
    await copyFile(join(vm.runDir, 'OVMF_VARS.fd'), uefiVarsPath);
  }
  vm.markSnapshotted(statePath);
  await qmp.execute('quit').catch(() => undefined);
  await vm.waitForExit({ timeoutMs: 30_000 });

  const { consoleLogPath: _console, incoming: _incoming, uefiVarsPath: _vars, ...startSpec } = vm.spec;
  const snapshot: VmSnapshot = {
    formatVersion: SNAPSHOT_FORMAT_VERSION,
    vmName: vm.name,
    savedAt: new Date().toISOString(),
    statePath,
    compression: compress ? 'zstd' : 'none',
    stateSizeBytes: (await stat(statePath)).size,
    diskPath: vm.spec.diskPath,
    diskFormat: vm.spec.diskFormat,
    startSpec,
    ...(uefiVarsPath === undefined ? {} : { uefiVarsPath }),
  };
  await writeFile(join(options.dir, SNAPSHOT_FILE), `${JSON.stringify(snapshot, null, 2)}\n`);
  reporter.emit({
    type: 'log',
    source: 'vm',
    line: `saved ${vm.name} to ${statePath} (${(snapshot.stateSizeBytes / 1024 ** 2).toFixed(1)} MiB) in ${((performance.now() - started) / 1000).toFixed(1)} s; its disk ${snapshot.diskPath} is frozen`,
  });
  return snapshot;
}

/** Reads snapshot.json from a snapshot directory, refusing other format versions. */
export async function readVmSnapshot(dir: string): Promise<VmSnapshot> {
  const path = join(dir, SNAPSHOT_FILE);
  let data: Partial<VmSnapshot>;
  try {
    data = JSON.parse(await readFile(path, 'utf8')) as Partial<VmSnapshot>;
  } catch (error) {
    throw new KibError('SNAPSHOT_UNREADABLE', `Could not read ${path}: ${(error as Error).message}`);
  }
  if (data.formatVersion !== SNAPSHOT_FORMAT_VERSION) {
    throw new KibError('SNAPSHOT_VERSION', `${path} has snapshot format ${String(data.formatVersion)}; this kib reads format ${SNAPSHOT_FORMAT_VERSION}`, {
      hint: 'Restore it with the kib version that saved it, or save a new snapshot.',
    });
  }
  return data as VmSnapshot;
}

export interface RestoreVmOptions {
  /** The new overlay on the frozen disk. */
  overlayPath: string;
  /** Overrides for this run: name, state dir, namespace, NICs (a different tap keeps the guest's IP), owner. */
  overrides?: Partial<Pick<StartVmSpec, 'name' | 'stateDir' | 'netns' | 'nics' | 'persistentRunId' | 'owner' | 'consoleLogPath' | 'stopGraceMs'>>;
  timeoutMs?: number;
  signal?: AbortSignal;
  reporter?: Reporter;
}

/** The `-incoming` URI that reads a saved state back. Pure. */
export function incomingUri(snapshot: Pick<VmSnapshot, 'statePath' | 'compression'>): string {
  return snapshot.compression === 'zstd' ? `exec:zstd -q -dc ${shellQuote(snapshot.statePath)}` : `exec:cat ${shellQuote(snapshot.statePath)}`;
}

/**
 * Starts a saved VM again: a new overlay on the frozen disk, QEMU with the same devices and
 * `-incoming`, wait until the state is loaded (paused), then `cont`. The guest's clock is still at
 * save time: call setGuestClock once its agent answers.
 */
export async function restoreVm(snapshot: VmSnapshot, options: RestoreVmOptions): Promise<StartedVm> {
  const timeoutMs = options.timeoutMs ?? 300_000;
  await createOverlay({
    basePath: snapshot.diskPath,
    baseFormat: snapshot.diskFormat,
    overlayPath: options.overlayPath,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
  const vm = await startVm(
    {
      ...snapshot.startSpec,
      ...options.overrides,
      diskPath: options.overlayPath,
      diskFormat: 'qcow2',
      incoming: incomingUri(snapshot),
      ...(snapshot.uefiVarsPath === undefined ? {} : { uefiVarsPath: snapshot.uefiVarsPath }),
    },
    { ...(options.signal === undefined ? {} : { signal: options.signal }), ...(options.reporter === undefined ? {} : { reporter: options.reporter }) },
  );
  try {
    const qmp = vm.qmp();
    const status = await waitForReady({
      what: `${vm.name} to load its saved state from ${snapshot.statePath}`,
      vm,
      timeoutMs,
      intervalMs: 100,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      probe: async () => {
        const { status } = await qmp.execute<{ status: string }>('query-status');
        return status === 'inmigrate' ? undefined : status;
      },
    });
    if (status !== 'running') await qmp.execute('cont');
    return vm;
  } catch (error) {
    await vm.stop({ graceMs: 0 });
    throw error;
  }
}

export interface GuestClockResult {
  /** Guest clock minus host clock before the correction (negative: the guest was behind). */
  skewBeforeMs: number;
  skewAfterMs: number;
}

/**
 * Sets the guest's clock to the host's through the guest agent (`guest-set-time`), waiting for
 * the agent first. A restored guest's clock stands at save time.
 */
export async function setGuestClock(vm: StartedVm, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<GuestClockResult> {
  vm.assertRunning('guest-set-time');
  const agent = vm.guestAgent();
  const guestNowMs = async (): Promise<number> => (await agent.execute<number>('guest-get-time', undefined, { timeoutMs: 5_000 })) / 1e6;
  const before = await waitForReady({
    what: `${vm.name}'s guest agent to answer guest-get-time`,
    vm,
    timeoutMs: options.timeoutMs ?? 60_000,
    intervalMs: 500,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    probe: () =>
      guestNowMs().then(
        (ms) => ms - Date.now(),
        (error: unknown) => {
          if (error instanceof KibError && error.code === 'GUEST_AGENT_TIMEOUT') return undefined;
          throw error;
        },
      ),
  });
  try {
    // Nanoseconds since the epoch; a double holds them to well under a microsecond's error here.
    await agent.execute('guest-set-time', { time: Date.now() * 1e6 }, { timeoutMs: 15_000 });
  } catch (error) {
    if (error instanceof GuestAgentError) {
      throw new KibError('GUEST_CLOCK', `Could not set ${vm.name}'s clock: ${error.message}`, { hint: 'Is guest-set-time allowed in the guest agent (qemu-ga --allow-rpcs / --block-rpcs)?' });
    }
    throw error;
  }
  return { skewBeforeMs: before, skewAfterMs: (await guestNowMs()) - Date.now() };
}
