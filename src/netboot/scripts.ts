import type { BootDecision } from './lifecycle.js';
import type { Machine } from './machines.js';

/**
 * Text the netboot server hands out: iPXE scripts and stage2's instructions. Pure renderers.
 */

export interface Stage2Urls {
  /** Base URL of the netboot HTTP server, without a trailing slash. */
  server: string;
}

/**
 * Kernel command line of stage2: the initramfs by name, the console on serial and VGA, and where
 * to ask. `initrd=initrd` names the image iPXE fetched (`--name initrd` below): under UEFI, iPXE
 * releases before LoadFile2 support (Debian 12 ships a 2019 build) hand the initramfs to Linux's
 * EFI stub only as a file the stub opens by the name on its command line; without it the kernel
 * boots with no root and panics. Under BIOS the kernel ignores the parameter.
 */
export function stage2KernelArgs(machine: Machine, server: string): string {
  return `initrd=initrd console=tty0 console=ttyS0,115200 quiet kib.server=${server} kib.mac=${machine.spec.macAddress}`;
}

/**
 * The script iPXE runs for a known Machine. `local` leaves iPXE with `exit`: the firmware goes on
 * to the next boot device (the disk, which comes first in the boot order anyway; iPXE only runs
 * when the disk did not boot or the network was chosen for this boot).
 */
export function renderIpxeScript(machine: Machine, decision: BootDecision, server: string): string {
  if (decision.kind === 'local') {
    return ['#!ipxe', `echo kib netboot: ${decision.why}`, 'echo booting from the local disk', 'exit', ''].join('\n');
  }
  return [
    '#!ipxe',
    `echo kib netboot: installing ${machine.metadata.name}`,
    `kernel ${server}/stage2/vmlinuz ${stage2KernelArgs(machine, server)}`,
    `initrd --name initrd ${server}/stage2/initrd`,
    'boot',
    '',
  ].join('\n');
}

/**
 * The script every iPXE client gets first: it asks for the script of the MAC it booted from
 * (`netX` is the network device iPXE last opened), so one DHCP answer serves every Machine.
 */
export function renderChainScript(server: string): string {
  return ['#!ipxe', `chain ${server}/ipxe/\${netX/mac}`, ''].join('\n');
}

/** For a MAC that is no Machine's (only reachable by a client that got an address elsewhere). */
export function renderUnknownIpxeScript(): string {
  return ['#!ipxe', 'echo kib netboot: this MAC is not a known Machine', 'exit', ''].join('\n');
}

export interface Stage2Instructions {
  name: string;
  imageUrl: string;
  /** sha256 and size of the uncompressed raw image. */
  imageSha256: string;
  imageSizeBytes: number;
  diskPath?: string;
  diskMinSizeBytes?: number;
  diskModel?: string;
  allowWipe: boolean;
  /** Where stage2 fetches the CIDATA partition layout for a disk of N bytes (`<url>/<bytes>/`). */
  cidataUrl: string;
  /** Measure the disk's raw streaming speed (zeros of the image's length, written and read back) first. */
  measureDisk?: boolean;
}

/** Shell single-quoting: the value can hold anything but becomes one word. */
export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/** Instructions as `KEY='value'` lines, sourced by stage2's /init (busybox ash). */
export function renderInstructions(instructions: Stage2Instructions): string {
  const entries: [string, string | number | boolean | undefined][] = [
    ['KIB_NAME', instructions.name],
    ['KIB_IMAGE_URL', instructions.imageUrl],
    ['KIB_IMAGE_SHA256', instructions.imageSha256],
    ['KIB_IMAGE_SIZE', instructions.imageSizeBytes],
    ['KIB_DISK_PATH', instructions.diskPath],
    ['KIB_DISK_MIN_SIZE', instructions.diskMinSizeBytes],
    ['KIB_DISK_MODEL', instructions.diskModel],
    ['KIB_ALLOW_WIPE', instructions.allowWipe ? 'yes' : 'no'],
    ['KIB_CIDATA_URL', instructions.cidataUrl],
    ['KIB_MEASURE_DISK', instructions.measureDisk === true ? 'yes' : 'no'],
  ];
  return `${entries.map(([key, value]) => `${key}=${shellQuote(value === undefined ? '' : String(value))}`).join('\n')}\n`;
}
