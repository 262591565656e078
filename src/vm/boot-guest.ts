import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { KibError, throwIfAborted } from '../core/errors.js';
import type { RunResult } from '../process/index.js';
import { silentReporter, type Reporter } from '../report/events.js';
import { generateKeyPair, sshExec, waitForCloudInit, waitForSsh, type SshExecOptions, type SshKeyPair, type SshTarget } from '../ssh/index.js';
import type { DiskImage } from '../core/types.js';
import { createOverlay, qemuImgInfo } from './disks.js';
import { createConfigDriveSeed, createNoCloudSeed } from './seeds.js';
import { startVm, type StartedVm, type StartVmSpec, type VmStopOptions } from './start-vm.js';
import { whileVmRuns } from './wait.js';

/** The guest's disk: a fresh qcow2 overlay on a base (grown to `sizeBytes`), or a disk as it is. */
export type GuestDisk =
  | { kind: 'overlay'; basePath: string; baseFormat: 'qcow2' | 'raw'; sizeBytes?: number; /** Keep the overlay when the guest is disposed (the build's output). */ keep?: boolean }
  | { kind: 'existing'; path: string; format: 'qcow2' | 'raw' };

/**
 * How cloud-init finds its data. `nocloud`: a `cidata` ISO. `configdrive`: a `config-2` ISO, as
 * KubeVirt gives CAPK machines. `none`: no seed disk (an HTTP seed through `smbiosSerial`
 * `ds=nocloud-net;s=URL`, a seed baked into the image, or a netboot VM with a blank disk).
 */
export type GuestSeed =
  | { kind: 'nocloud'; metaData?: string | Readonly<Record<string, unknown>>; networkConfig?: string | Readonly<Record<string, unknown>> }
  | { kind: 'configdrive'; metaData?: Readonly<Record<string, unknown>>; networkData?: Readonly<Record<string, unknown>> }
  | { kind: 'existing'; path: string }
  | { kind: 'none' };

/**
 * What to wait for before returning. `cloud-init` fails on a cloud-init error; `cloud-init-settled`
 * waits for it to finish but leaves judging its status to the caller (kib verify's checks do).
 * `none`: return once QEMU answers (a netboot VM has no SSH at first).
 */
export type GuestWait = 'none' | 'ssh' | 'cloud-init' | 'cloud-init-settled';

export interface BootGuestSpec {
  name: string;
  /** Where the overlay, the ephemeral key and the seed are made; the guest's own files are removed on disposal. */
  workDir: string;
  disk: GuestDisk;
  seed: GuestSeed;
  /**
   * user-data text, or a function of the ephemeral public key that makes it. Absent: one sudo user
   * (`user`) that logs in with the ephemeral key and nothing else.
   */
  userData?: string | ((publicKey: string) => string);
  /** The SSH login user; default `kib`. */
  user?: string;
  /** A private key the caller's user-data authorizes for `user`; absent: an ephemeral key pair is made. */
  privateKeyPath?: string;
  /** local-hostname in the default metadata; default: `name`. */
  hostname?: string;
  /** SMBIOS serial (`ds=nocloud-net;s=http://…/`), for an HTTP seed. */
  smbiosSerial?: string;
  /** Everything about the VM itself: size, firmware, NICs, namespace, boot order, lifetime. */
  vm: Omit<StartVmSpec, 'name' | 'diskPath' | 'diskFormat' | 'seedPath' | 'smbiosSerial'>;
  /**
   * Where SSH reaches the guest when it has no user-mode NIC (its static address on a private
   * bridge, reached from inside the namespace). Default: the first user-mode NIC's forwarded port.
   */
  sshAddress?: { host: string; port?: number };
  wait: GuestWait;
  bootTimeoutMs: number;
}

export interface BootGuestOptions {
  signal?: AbortSignal;
  reporter?: Reporter;
  /** Progress lines for the caller's phase ("waiting for SSH on …", "still waiting …"). */
  onStep?: (message: string) => void;
}

/**
 * A booted guest: the VM, how to log in, and its work files. Hold it with `await using`: disposal
 * stops the VM and removes the seed, the key and (unless kept) the overlay.
 */
export interface StartedGuest extends AsyncDisposable {
  readonly vm: StartedVm;
  /** How to log in; undefined when the guest has no SSH path (no user-mode NIC, no `sshAddress`). */
  readonly ssh: SshTarget | undefined;
  /** The ephemeral key pair, when kib made one. */
  readonly keys: SshKeyPair | undefined;
  readonly diskPath: string;
  /** The disk the VM boots from (the overlay, or the given disk). */
  readonly disk: DiskImage;
  readonly seedPath: string | undefined;
  /** QEMU start until the first SSH login (0 when not waited for). */
  readonly bootMs: number;
  /** SSH login until cloud-init finished (0 when not waited for). */
  readonly cloudInitMs: number;
  /** `cloud-init status --long` as the wait saw it; undefined when not waited for or it failed. */
  readonly cloudInitStatus: string | undefined;
  /** The SSH target, or a clear error when the guest has none. */
  requireSsh(): SshTarget;
  /**
   * One command over SSH. Refused (VmNotRunningError) once the VM is stopped or snapshotted;
   * if the VM dies while the command runs, that is what is reported (VmExitedError).
   */
  exec(command: string | readonly string[], options?: SshExecOptions): Promise<RunResult>;
  stop(options?: VmStopOptions): Promise<void>;
}

/**
 * The one boot-a-guest sequence: overlay (or the given disk) → key → seed → QEMU → SSH →
 * cloud-init, each wait racing the VM's exit. Provisioning, kib verify and the VM tests all boot
 * through here; a cluster or netboot node uses the same path with tap NICs and other waits.
 */
export async function bootGuest(spec: BootGuestSpec, options: BootGuestOptions = {}): Promise<StartedGuest> {
  const { signal } = options;
  const reporter = options.reporter ?? silentReporter;
  const onStep = options.onStep ?? ((message: string) => reporter.emit({ type: 'log', source: 'vm', line: message }));
  const user = spec.user ?? 'kib';
  const created: string[] = [];
  const removeCreated = async (): Promise<void> => {
    for (const path of created.reverse()) await rm(path, { recursive: true, force: true });
  };
  await mkdir(spec.workDir, { recursive: true });

  let vm: StartedVm | undefined;
  try {
    let disk: DiskImage;
    if (spec.disk.kind === 'overlay') {
      const overlayPath = join(spec.workDir, `${spec.name}.qcow2`);
      if (spec.disk.keep !== true) created.push(overlayPath);
      disk = await createOverlay({
        basePath: spec.disk.basePath,
        baseFormat: spec.disk.baseFormat,
        overlayPath,
        ...(spec.disk.sizeBytes === undefined ? {} : { sizeBytes: spec.disk.sizeBytes }),
        ...(signal === undefined ? {} : { signal }),
      });
    } else {
      disk = { path: spec.disk.path, format: spec.disk.format, virtualSizeBytes: (await qemuImgInfo(spec.disk.path, signal)).virtualSizeBytes };
    }

    let keys: SshKeyPair | undefined;
    let privateKeyPath = spec.privateKeyPath;
    if (privateKeyPath === undefined && (spec.seed.kind === 'nocloud' || spec.seed.kind === 'configdrive')) {
      const keyDir = join(spec.workDir, `${spec.name}-ssh`);
      created.push(keyDir);
      keys = await generateKeyPair(keyDir, { comment: `kib-${spec.name}`, ...(signal === undefined ? {} : { signal }) });
      privateKeyPath = keys.privateKeyPath;
    }

    const seedPath = await writeSeed(spec, keys, user, created, signal);
    throwIfAborted(signal, `Booting ${spec.name}`);

    const bootStarted = performance.now();
    vm = await startVm(
      {
        ...spec.vm,
        name: spec.name,
        diskPath: disk.path,
        diskFormat: disk.format,
        ...(seedPath === undefined ? {} : { seedPath }),
        ...(spec.smbiosSerial === undefined ? {} : { smbiosSerial: spec.smbiosSerial }),
      },
      { ...(signal === undefined ? {} : { signal }), reporter },
    );
    const ssh = sshTargetOf(vm, spec, user, privateKeyPath);

    let bootMs = 0;
    let cloudInitMs = 0;
    let cloudInitStatus: string | undefined;
    if (spec.wait !== 'none') {
      if (ssh === undefined) {
        throw new KibError('GUEST_NO_SSH', `Cannot wait for ${spec.wait} in ${spec.name}: it has no SSH path (no user-mode NIC, no sshAddress) or no login key`);
      }
      const waitOptions = { vm, timeoutMs: spec.bootTimeoutMs, onStillWaiting: onStep, ...(signal === undefined ? {} : { signal }) };
      onStep(`waiting for SSH on ${ssh.host}:${ssh.port}${ssh.netns === undefined ? '' : ` in network namespace ${ssh.netns}`} (console: ${vm.consoleLogPath})`);
      await waitForSsh(ssh, waitOptions);
      bootMs = performance.now() - bootStarted;
      if (spec.wait === 'cloud-init' || spec.wait === 'cloud-init-settled') {
        onStep('waiting for cloud-init to finish');
        const cloudInitStarted = performance.now();
        if (spec.wait === 'cloud-init') {
          cloudInitStatus = await waitForCloudInit(ssh, waitOptions);
        } else {
          cloudInitStatus = await waitForCloudInit(ssh, waitOptions).catch((error: unknown) => {
            // Settled, not judged: a cloud-init error is for the caller's checks; death and cancel are not.
            if (error instanceof KibError && (error.code === 'CLOUD_INIT_FAILED' || error.code === 'TIMEOUT')) return undefined;
            throw error;
          });
        }
        cloudInitMs = performance.now() - cloudInitStarted;
      }
    }
    return new Guest({ vm, ssh, keys, disk, seedPath, bootMs, cloudInitMs, cloudInitStatus, removeCreated });
  } catch (error) {
    await vm?.stop({ graceMs: 0 }).catch(() => undefined);
    await removeCreated();
    throw error;
  }
}

async function writeSeed(
  spec: BootGuestSpec,
  keys: SshKeyPair | undefined,
  user: string,
  created: string[],
  signal: AbortSignal | undefined,
): Promise<string | undefined> {
  if (spec.seed.kind === 'none') return undefined;
  if (spec.seed.kind === 'existing') return spec.seed.path;
  const userData =
    typeof spec.userData === 'string'
      ? spec.userData
      : spec.userData !== undefined
        ? spec.userData(requireKey(keys, spec.name).publicKey)
        : renderGuestUserData(user, requireKey(keys, spec.name).publicKey);
  const dir = join(spec.workDir, `${spec.name}-seed`);
  created.push(dir);
  const hostname = spec.hostname ?? spec.name;
  const instanceId = `${spec.name}-${Date.now().toString(36)}`;
  const signalOption = signal === undefined ? {} : { signal };
  if (spec.seed.kind === 'nocloud') {
    return await createNoCloudSeed({
      dir,
      userData,
      metaData: spec.seed.metaData ?? { 'instance-id': instanceId, 'local-hostname': hostname },
      ...(spec.seed.networkConfig === undefined ? {} : { networkConfig: spec.seed.networkConfig }),
      ...signalOption,
    });
  }
  return await createConfigDriveSeed({
    dir,
    userData,
    metaData: spec.seed.metaData ?? { uuid: instanceId, hostname, name: hostname },
    ...(spec.seed.networkData === undefined ? {} : { networkData: spec.seed.networkData }),
    ...signalOption,
  });
}

function requireKey(keys: SshKeyPair | undefined, name: string): SshKeyPair {
  if (keys === undefined) {
    throw new KibError('GUEST_NO_KEY', `${name}: user-data made from the ephemeral key needs that key, but privateKeyPath was given instead`);
  }
  return keys;
}

/** The default user-data: one passwordless-sudo user who logs in with the given key only. */
export function renderGuestUserData(user: string, publicKey: string): string {
  return [
    '#cloud-config',
    'users:',
    `  - name: ${user}`,
    '    sudo: "ALL=(ALL) NOPASSWD:ALL"',
    '    shell: /bin/bash',
    '    lock_passwd: true',
    '    ssh_authorized_keys:',
    `      - ${publicKey.trim()}`,
    '',
  ].join('\n');
}

function sshTargetOf(vm: StartedVm, spec: BootGuestSpec, user: string, privateKeyPath: string | undefined): SshTarget | undefined {
  if (privateKeyPath === undefined) return undefined;
  const netns = vm.netns === undefined ? {} : { netns: vm.netns };
  if (spec.sshAddress !== undefined) return { host: spec.sshAddress.host, port: spec.sshAddress.port ?? 22, user, privateKeyPath, ...netns };
  if (vm.sshPort === undefined) return undefined;
  return { host: '127.0.0.1', port: vm.sshPort, user, privateKeyPath, ...netns };
}

class Guest implements StartedGuest {
  readonly vm: StartedVm;
  readonly ssh: SshTarget | undefined;
  readonly keys: SshKeyPair | undefined;
  readonly diskPath: string;
  readonly disk: DiskImage;
  readonly seedPath: string | undefined;
  readonly bootMs: number;
  readonly cloudInitMs: number;
  readonly cloudInitStatus: string | undefined;
  readonly #removeCreated: () => Promise<void>;
  #disposing: Promise<void> | undefined;

  constructor(init: {
    vm: StartedVm;
    ssh: SshTarget | undefined;
    keys: SshKeyPair | undefined;
    disk: DiskImage;
    seedPath: string | undefined;
    bootMs: number;
    cloudInitMs: number;
    cloudInitStatus: string | undefined;
    removeCreated: () => Promise<void>;
  }) {
    this.vm = init.vm;
    this.ssh = init.ssh;
    this.keys = init.keys;
    this.disk = init.disk;
    this.diskPath = init.disk.path;
    this.seedPath = init.seedPath;
    this.bootMs = init.bootMs;
    this.cloudInitMs = init.cloudInitMs;
    this.cloudInitStatus = init.cloudInitStatus;
    this.#removeCreated = init.removeCreated;
  }

  requireSsh(): SshTarget {
    if (this.ssh === undefined) throw new KibError('GUEST_NO_SSH', `${this.vm.name} has no SSH path (no user-mode NIC, no sshAddress) or no login key`);
    return this.ssh;
  }

  async exec(command: string | readonly string[], options: SshExecOptions = {}): Promise<RunResult> {
    const text = typeof command === 'string' ? command : command.join(' ');
    this.vm.assertRunning(`\`${text.slice(0, 80)}\` over SSH`);
    const target = this.requireSsh();
    return await whileVmRuns(this.vm, (signal) => sshExec(target, command, { ...options, signal }), {
      what: `running \`${text.slice(0, 80)}\` over SSH`,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
  }

  stop(options?: VmStopOptions): Promise<void> {
    return this.vm.stop(options);
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.#disposing ??= (async () => {
      try {
        await this.vm.stop();
      } finally {
        await this.#removeCreated();
      }
    })();
    return this.#disposing;
  }
}
