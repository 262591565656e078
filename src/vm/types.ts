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
  /** Firmware boot order (QEMU `bootindex`, lowest first); absent: not a boot device. */
  bootIndex?: number;
}

/**
 * One virtio-net NIC.
 * `user`: QEMU's user-mode network, with the guest's port 22 forwarded to `sshHostPort` on the
 * loopback of the network namespace QEMU runs in.
 * `tap`: an existing tap device (on a bridge, see src/net/), opened by name in QEMU's namespace.
 */
export type VmNic =
  | { kind: 'user'; mode: NetworkMode; sshHostPort: number; macAddress?: string; bootIndex?: number }
  | { kind: 'tap'; ifname: string; macAddress: string; bootIndex?: number };

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
  /** virtio-blk with discard passed through; boot order comes from each disk's `bootIndex`. */
  disks: readonly VmDisk[];
  /** A NoCloud (`cidata`) or ConfigDrive (`config-2`) ISO, attached read-only on virtio. */
  seedPath?: string;
  memoryMiB: number;
  cpus: number;
  accelerator: Accelerator;
  firmware: VmFirmware;
  /** In this order; netdev ids are net0, net1, … */
  nics: readonly VmNic[];
  /**
   * SMBIOS system serial; cloud-init reads `ds=nocloud-net;s=URL` there (an HTTP seed without a
   * seed disk).
   */
  smbiosSerial?: string;
  /** A QEMU migration URI to load the machine state from (`exec:…`); the VM starts paused. */
  incoming?: string;
  paths: VmRunPaths;
}
