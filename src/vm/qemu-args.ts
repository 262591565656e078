import type { VmSpec } from './types.js';

export const QEMU_SYSTEM_BINARY = 'qemu-system-x86_64';
export const GUEST_AGENT_PORT_NAME = 'org.qemu.guest_agent.0';

/**
 * The QEMU command line for a VM, modelled on the device set KubeVirt gives a VMI: q35, virtio-blk
 * disks (the cloud-init disk too), virtio-net, virtio-rng, a memory balloon, a serial console and a
 * virtio-serial guest-agent channel, and KubeVirt's SMBIOS strings. Pure: unit-tested as arrays.
 */
export function qemuSystemArgs(spec: VmSpec): string[] {
  const args: string[] = [
    '-name',
    opt(spec.name),
    '-machine',
    'q35',
    '-accel',
    spec.accelerator === 'kvm' ? 'kvm' : 'tcg,thread=multi',
    // Under TCG `host` does not exist; `max` offers every feature the emulator implements.
    '-cpu',
    spec.accelerator === 'kvm' ? 'host' : 'max',
    '-smp',
    String(spec.cpus),
    '-m',
    `${spec.memoryMiB}M`,
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-smbios',
    `type=1,manufacturer=KubeVirt,product=None,family=KubeVirt${spec.smbiosSerial === undefined ? '' : `,serial=${opt(spec.smbiosSerial)}`}`,
  ];

  if (spec.firmware.type === 'uefi') {
    args.push(
      '-drive',
      `if=pflash,format=raw,unit=0,readonly=on,file=${opt(spec.firmware.codePath)}`,
      '-drive',
      `if=pflash,format=raw,unit=1,file=${opt(spec.firmware.varsPath)}`,
    );
  }

  spec.disks.forEach((disk, index) => {
    // discard + detect-zeroes=unmap: an fstrim in the guest punches holes in the qcow2.
    args.push(
      '-drive',
      `file=${opt(disk.path)},format=${disk.format},if=none,id=disk${index},discard=unmap,detect-zeroes=unmap`,
      '-device',
      `virtio-blk-pci,drive=disk${index}${bootIndex(disk.bootIndex)}`,
    );
  });

  if (spec.seedPath !== undefined) {
    // virtio, not SATA/IDE: the Debian cloud kernel has no AHCI driver, and KubeVirt uses virtio too.
    args.push('-drive', `file=${opt(spec.seedPath)},format=raw,if=none,id=seed0,readonly=on`, '-device', 'virtio-blk-pci,drive=seed0');
  }

  spec.nics.forEach((nic, index) => {
    const id = `net${index}`;
    const netdev =
      nic.kind === 'user'
        ? `user,id=${id},hostfwd=tcp:127.0.0.1:${nic.sshHostPort}-:22${nic.mode === 'restricted' ? ',restrict=on' : ''}`
        : // script=no: the tap already exists, on its bridge (src/net/); QEMU only opens it.
          `tap,id=${id},ifname=${opt(nic.ifname)},script=no,downscript=no`;
    args.push(
      '-netdev',
      netdev,
      '-device',
      `virtio-net-pci,netdev=${id}${nic.macAddress === undefined ? '' : `,mac=${nic.macAddress}`}${bootIndex(nic.bootIndex)}`,
    );
  });
  args.push(
    '-object',
    'rng-random,id=rng0,filename=/dev/urandom',
    '-device',
    'virtio-rng-pci,rng=rng0',
    '-device',
    'virtio-balloon-pci',
    '-chardev',
    `file,id=console0,path=${opt(spec.paths.consoleLog)}`,
    '-serial',
    'chardev:console0',
    '-chardev',
    `socket,id=qmp0,path=${opt(spec.paths.qmpSocket)},server=on,wait=off`,
    '-mon',
    'chardev=qmp0,mode=control',
    '-device',
    'virtio-serial-pci,id=vserial0',
    '-chardev',
    `socket,id=qga0,path=${opt(spec.paths.guestAgentSocket)},server=on,wait=off`,
    '-device',
    `virtserialport,bus=vserial0.0,chardev=qga0,name=${GUEST_AGENT_PORT_NAME}`,
    '-pidfile',
    spec.paths.pidFile,
  );
  // QEMU runs the exec: URI with /bin/sh -c; the caller quotes paths in it (see snapshot.ts).
  if (spec.incoming !== undefined) args.push('-incoming', spec.incoming);
  return args;
}

function bootIndex(index: number | undefined): string {
  return index === undefined ? '' : `,bootindex=${index}`;
}

/** QEMU option values use ',' as separator; a literal comma is written twice. */
function opt(value: string): string {
  return value.replaceAll(',', ',,');
}
