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
  disks: [{ path: '/work/disk.qcow2', format: 'qcow2', bootIndex: 1 }],
  seedPath: '/work/seed/cidata.iso',
  memoryMiB: 2048,
  cpus: 2,
  accelerator: 'tcg',
  firmware: { type: 'bios' },
  nics: [{ kind: 'user', mode: 'restricted', sshHostPort: 40022 }],
  paths,
};

/** The user-mode NIC of most VMs: SSH forwarded from a loopback port. */
const userNic = (port: number, networkSuffix: string, nicSuffix = ''): string[] => [
  '-netdev',
  `user,id=net0,hostfwd=tcp:127.0.0.1:${port}-:22${networkSuffix}`,
  '-device',
  `virtio-net-pci,netdev=net0${nicSuffix}`,
];

/** Everything after the disks is the same for every VM; only the port and paths vary. */
const tail = (port: number, networkSuffix: string, nicSuffix = ''): string[] => [...userNic(port, networkSuffix, nicSuffix), ...devices];

/** Everything after the NICs. */
const devices: string[] = [
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
        { path: '/work/disk.qcow2', format: 'qcow2', bootIndex: 1 },
        { path: '/work/data.raw', format: 'raw' },
      ],
      nics: [{ kind: 'user', mode: 'full', sshHostPort: 2222, macAddress: '52:54:00:aa:bb:cc' }],
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

  it('netboot layout: a blank disk first in the boot order, then the tap NIC on the private bridge, user-mode NIC for SSH beside it', () => {
    const { seedPath: _unused, ...withoutSeed } = base;
    const args = qemuSystemArgs({
      ...withoutSeed,
      disks: [{ path: '/work/blank.qcow2', format: 'qcow2', bootIndex: 1 }],
      nics: [
        { kind: 'user', mode: 'restricted', sshHostPort: 40022 },
        { kind: 'tap', ifname: 'kibtap0', macAddress: '52:54:00:00:00:01', bootIndex: 2 },
      ],
    });
    expect(args.slice(args.indexOf('-drive'))).toEqual([
      '-drive',
      'file=/work/blank.qcow2,format=qcow2,if=none,id=disk0,discard=unmap,detect-zeroes=unmap',
      '-device',
      'virtio-blk-pci,drive=disk0,bootindex=1',
      ...userNic(40022, ',restrict=on'),
      '-netdev',
      'tap,id=net1,ifname=kibtap0,script=no,downscript=no',
      '-device',
      'virtio-net-pci,netdev=net1,mac=52:54:00:00:00:01,bootindex=2',
      ...devices,
    ]);
  });

  it('NIC-only boot: no disk carries a boot index, the one tap NIC does', () => {
    const { seedPath: _unused, ...withoutSeed } = base;
    const args = qemuSystemArgs({
      ...withoutSeed,
      disks: [{ path: '/work/blank.qcow2', format: 'qcow2' }],
      nics: [{ kind: 'tap', ifname: 'kibtap1', macAddress: '52:54:00:00:00:02', bootIndex: 1 }],
    });
    expect(args.filter((a) => a.includes('bootindex'))).toEqual(['virtio-net-pci,netdev=net0,mac=52:54:00:00:00:02,bootindex=1']);
    expect(args).not.toContain('user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22,restrict=on');
  });

  it('puts an HTTP seed in the SMBIOS serial (commas doubled) and loads a saved state with -incoming, last', () => {
    const args = qemuSystemArgs({
      ...base,
      smbiosSerial: 'ds=nocloud-net;s=http://10.0.0.1:8080/nodes/a,b/',
      incoming: "exec:zstd -dc '/snap/state.zst'",
    });
    expect(args[args.indexOf('-smbios') + 1]).toBe(
      'type=1,manufacturer=KubeVirt,product=None,family=KubeVirt,serial=ds=nocloud-net;s=http://10.0.0.1:8080/nodes/a,,b/',
    );
    expect(args.slice(-2)).toEqual(['-incoming', "exec:zstd -dc '/snap/state.zst'"]);
  });
});
