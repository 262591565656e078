/** Plain data describing a VM; `VmSpec` is fully resolved and turns into a QEMU argv without I/O. */

export type Accelerator = 'kvm' | 'tcg';

/**
 * `restricted`: the guest reaches nothing but the forwarded SSH port (QEMU `restrict=on`).
 * `full`: user-mode NAT to whatever the host can reach (package mirrors while provisioning).
 */
export type NetworkMode = 'restricted' | 'full';

export interface VmDisk {
  path: string;
  format: 'qcow2' | 'raw';
}

export type VmFirmware =
  | { type: 'bios' }
  /** OVMF split into read-only code and a per-VM writable copy of the variable store. */
  | { type: 'uefi'; codePath: string; varsPath: string };

/** Where QEMU puts its pidfile, sockets and console log (inside the VM's run dir). */
export interface VmRunPaths {
  pidFile: string;
  qmpSocket: string;
  guestAgentSocket: string;
  consoleLog: string;
}

export interface VmSpec {
  name: string;
  /** The first disk is the boot disk. All are virtio-blk with discard passed through. */
  disks: readonly VmDisk[];
  /** A NoCloud (`cidata`) or ConfigDrive (`config-2`) ISO, attached read-only on virtio. */
  seedPath?: string;
  memoryMiB: number;
  cpus: number;
  accelerator: Accelerator;
  firmware: VmFirmware;
  network: NetworkMode;
  /** e.g. 52:54:00:12:34:56; QEMU picks one when absent. */
  macAddress?: string;
  /** Loopback port on the host forwarded to the guest's port 22. */
  sshHostPort: number;
  paths: VmRunPaths;
}
