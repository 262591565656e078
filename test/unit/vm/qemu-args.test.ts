import { describe, expect, it } from 'vitest';
import { qemuSystemArgs, type VmSpec } from '../../../src/vm/index.js';

const paths = {
  pidFile: '/state/runs/build-1/qemu.pid',
  qmpSocket: '/state/runs/build-1/qmp.sock',
  guestAgentSocket: '/state/runs/build-1/qga.sock',
  consoleLog: '/logs/console.log',
};

const base: VmSpec = {
  name: 'build',
  disks: [{ path: '/work/disk.qcow2', format: 'qcow2' }],
  seedPath: '/work/seed/cidata.iso',
  memoryMiB: 2048,
  cpus: 2,
  accelerator: 'tcg',
  firmware: { type: 'bios' },
  network: 'restricted',
  sshHostPort: 40022,
  paths,
};

/** Everything after the disks is the same for every VM; only the port and paths vary. */
const tail = (port: number, networkSuffix: string, nicSuffix = ''): string[] => [
  '-netdev',
  `user,id=net0,hostfwd=tcp:127.0.0.1:${port}-:22${networkSuffix}`,
  '-device',
  `virtio-net-pci,netdev=net0${nicSuffix}`,
  '-object',
  'rng-random,id=rng0,filename=/dev/urandom',
  '-device',
  'virtio-rng-pci,rng=rng0',
  '-device',
  'virtio-balloon-pci',
  '-chardev',
  'file,id=console0,path=/logs/console.log',
  '-serial',
  'chardev:console0',
  '-chardev',
  'socket,id=qmp0,path=/state/runs/build-1/qmp.sock,server=on,wait=off',
  '-mon',
  'chardev=qmp0,mode=control',
  '-device',
  'virtio-serial-pci,id=vserial0',
  '-chardev',
  'socket,id=qga0,path=/state/runs/build-1/qga.sock,server=on,wait=off',
  '-device',
  'virtserialport,bus=vserial0.0,chardev=qga0,name=org.qemu.guest_agent.0',
  '-pidfile',
  '/state/runs/build-1/qemu.pid',
];

describe('qemuSystemArgs', () => {
  it('builds a KubeVirt-like TCG machine with SeaBIOS, a virtio seed disk and restricted networking', () => {
    expect(qemuSystemArgs(base)).toEqual([
      '-name',
      'build',
      '-machine',
      'q35',
      '-accel',
      'tcg,thread=multi',
      '-cpu',
      'max',
      '-smp',
      '2',
      '-m',
      '2048M',
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-smbios',
      'type=1,manufacturer=KubeVirt,product=None,family=KubeVirt',
      '-drive',
      'file=/work/disk.qcow2,format=qcow2,if=none,id=disk0,discard=unmap,detect-zeroes=unmap',
      '-device',
      'virtio-blk-pci,drive=disk0,bootindex=1',
      '-drive',
      'file=/work/seed/cidata.iso,format=raw,if=none,id=seed0,readonly=on',
      '-device',
      'virtio-blk-pci,drive=seed0',
      ...tail(40022, ',restrict=on'),
    ]);
  });

  it('uses KVM with the host CPU, split OVMF pflash, extra disks, full networking and a fixed MAC', () => {
    const args = qemuSystemArgs({
      ...base,
      accelerator: 'kvm',
      cpus: 4,
      memoryMiB: 4096,
      firmware: { type: 'uefi', codePath: '/usr/share/OVMF/OVMF_CODE_4M.fd', varsPath: '/state/runs/build-1/OVMF_VARS.fd' },
      disks: [
        { path: '/work/disk.qcow2', format: 'qcow2' },
        { path: '/work/data.raw', format: 'raw' },
      ],
      network: 'full',
      macAddress: '52:54:00:aa:bb:cc',
      sshHostPort: 2222,
    });
    expect(args).toEqual([
      '-name',
      'build',
      '-machine',
      'q35',
      '-accel',
      'kvm',
      '-cpu',
      'host',
      '-smp',
      '4',
      '-m',
      '4096M',
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-smbios',
      'type=1,manufacturer=KubeVirt,product=None,family=KubeVirt',
      '-drive',
      'if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd',
      '-drive',
      'if=pflash,format=raw,unit=1,file=/state/runs/build-1/OVMF_VARS.fd',
      '-drive',
      'file=/work/disk.qcow2,format=qcow2,if=none,id=disk0,discard=unmap,detect-zeroes=unmap',
      '-device',
      'virtio-blk-pci,drive=disk0,bootindex=1',
      '-drive',
      'file=/work/data.raw,format=raw,if=none,id=disk1,discard=unmap,detect-zeroes=unmap',
      '-device',
      'virtio-blk-pci,drive=disk1',
      '-drive',
      'file=/work/seed/cidata.iso,format=raw,if=none,id=seed0,readonly=on',
      '-device',
      'virtio-blk-pci,drive=seed0',
      ...tail(2222, '', ',mac=52:54:00:aa:bb:cc'),
    ]);
  });

  it('leaves the seed disk out when there is none', () => {
    const { seedPath: _unused, ...withoutSeed } = base;
    const args = qemuSystemArgs(withoutSeed);
    expect(args.join(' ')).not.toContain('seed0');
    expect(args.filter((a) => a.startsWith('virtio-blk-pci'))).toEqual(['virtio-blk-pci,drive=disk0,bootindex=1']);
  });

  it('doubles commas in paths so QEMU does not split its options there', () => {
    const args = qemuSystemArgs({ ...base, name: 'a,b', disks: [{ path: '/work/odd,name.qcow2', format: 'qcow2' }] });
    expect(args).toContain('a,,b');
    expect(args).toContain('file=/work/odd,,name.qcow2,format=qcow2,if=none,id=disk0,discard=unmap,detect-zeroes=unmap');
  });
});
