import { describe, expect, it } from 'vitest';
import {
  compareSets,
  findMacBoundLines,
  isCloudInitNetworkFile,
  parseCloudInitStatus,
  parseContainerdConfig,
  parseCrictlImages,
  parseDsIdentifyList,
  parseFileDump,
  parseImageList,
  parseRootDiskLayout,
  parseServiceState,
  parseUnitProperties,
  pauseImageOf,
} from '../../../src/verify/parse.js';
import { containerd1Dump, containerd2Dump } from './fake-node.js';

describe('containerd config dump', () => {
  it('finds the sandbox image of containerd 2.x under pinned_images', () => {
    expect(parseContainerdConfig(containerd2Dump('registry.k8s.io/pause:3.10.1'))).toEqual({
      sandboxImage: 'registry.k8s.io/pause:3.10.1',
      sandboxKey: 'plugins.io.containerd.cri.v1.images.pinned_images.sandbox',
      systemdCgroup: true,
    });
  });

  it('finds sandbox_image of containerd 1.x', () => {
    expect(parseContainerdConfig(containerd1Dump('registry.k8s.io/pause:3.6', false))).toEqual({
      sandboxImage: 'registry.k8s.io/pause:3.6',
      sandboxKey: 'plugins.io.containerd.grpc.v1.cri.sandbox_image',
      systemdCgroup: false,
    });
  });

  it('does not mistake the runc sandboxer or other keys for the sandbox image', () => {
    const dump = "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\n  sandboxer = 'podsandbox'\n  sandbox = 'nope'\n";
    expect(parseContainerdConfig(dump).sandboxImage).toBeUndefined();
  });

  it('reads dotted keys and inline mixed quoting', () => {
    const dump = `version = 3\n[plugins."io.containerd.cri.v1.images"]\n  pinned_images.sandbox = "registry.example/pause:3.10"\n`;
    expect(parseContainerdConfig(dump).sandboxImage).toBe('registry.example/pause:3.10');
  });
});

describe('images', () => {
  it('reads repo tags from crictl JSON and skips untagged images', () => {
    const json = JSON.stringify({
      images: [
        { id: 'sha256:1', repoTags: ['registry.k8s.io/pause:3.10.1'], repoDigests: ['registry.k8s.io/pause@sha256:ee'], size: '320368', uid: { value: '65535' }, username: '', spec: null, pinned: true },
        { id: 'sha256:2', repoTags: [], repoDigests: ['registry.k8s.io/etcd@sha256:ff'], size: '1', uid: null, username: '', spec: null, pinned: false },
      ],
    });
    expect(parseCrictlImages(json)).toEqual(['registry.k8s.io/pause:3.10.1']);
    expect(() => parseCrictlImages('{}')).toThrow('no "images" array');
  });

  it("reads kubeadm's list, ignoring warnings, and picks its pause image", () => {
    const out = 'W1121 12:00:00.000000    1234 version.go:109] could not fetch a Kubernetes version\nregistry.k8s.io/kube-apiserver:v1.36.1\nregistry.k8s.io/coredns/coredns:v1.13.1\nregistry.k8s.io/pause:3.10.1\n';
    const list = parseImageList(out);
    expect(list).toEqual(['registry.k8s.io/kube-apiserver:v1.36.1', 'registry.k8s.io/coredns/coredns:v1.13.1', 'registry.k8s.io/pause:3.10.1']);
    expect(pauseImageOf(list)).toBe('registry.k8s.io/pause:3.10.1');
  });

  it('compares as sets', () => {
    expect(compareSets(['a', 'b', 'b'], ['b', 'c'])).toEqual({ missing: ['a'], extra: ['c'] });
  });
});

describe('cloud-init', () => {
  it('reads 22.x and 24.x status output', () => {
    expect(parseCloudInitStatus('status: done\ntime: Sat, 21 Nov 2026 12:00:05 +0000\ndetail:\nDataSourceNoCloud [seed=/dev/vdb][dsmode=net]\n')).toEqual({
      status: 'done',
      extendedStatus: undefined,
      detail: 'DataSourceNoCloud [seed=/dev/vdb][dsmode=net]',
    });
    expect(parseCloudInitStatus('status: done\nextended_status: degraded done\nboot_status_code: enabled-by-generator\ndetail: DataSourceConfigDrive\nerrors: []\n')).toEqual({
      status: 'done',
      extendedStatus: 'degraded done',
      detail: 'DataSourceConfigDrive',
    });
  });

  it('reads the effective datasource list from the last DSLIST line of ds-identify.log', () => {
    expect(parseDsIdentifyList('DSNAME=\nDSLIST=NoCloud ConfigDrive None\nMODE=search\n')).toEqual(['NoCloud', 'ConfigDrive', 'None']);
    expect(parseDsIdentifyList('policy loaded: mode=search\n')).toBeUndefined();
  });
});

describe('systemctl show', () => {
  it('reads properties in any order', () => {
    expect(parseServiceState('UnitFileState=enabled\nActiveState=activating\nSubState=auto-restart\nLoadState=loaded\n')).toEqual({
      loadState: 'loaded',
      activeState: 'activating',
      subState: 'auto-restart',
      unitFileState: 'enabled',
    });
  });
});

describe('MAC-bound network configuration', () => {
  const files = parseFileDump(
    [
      '==> /etc/NetworkManager/system-connections/eth0.nmconnection',
      '[connection]',
      'uuid=5fb06bd0-0bb0-7ffb-45f1-d6edd65f3e03',
      '[ethernet]',
      '# mac-address=00:11:22:33:44:55',
      'mac-address=52:54:00:12:34:56',
      '==> /etc/sysconfig/network-scripts/ifcfg-eth0',
      'DEVICE=eth0',
      'HWADDR=52:54:00:12:34:56',
      '==> /etc/systemd/network/10-cloud-init-eth0.network',
      '[Match]',
      'MACAddress=52:54:00:12:34:56',
      '==> /etc/systemd/network/99-dhcp.network',
      '[Match]',
      'Name=*',
      '==> /etc/netplan/50-cloud-init.yaml',
      'network:',
      '  ethernets:',
      '    eth0:',
      '      match:',
      '        macaddress: 52:54:00:12:34:56',
      '==> /etc/other/mac-address.conf',
      'mac-address=ignored',
      '',
    ].join('\n'),
  );

  it('finds MAC and UUID lines in every format and ignores comments and unrelated files', () => {
    expect(findMacBoundLines(files).map((b) => `${b.path}:${b.line}: ${b.text}`)).toEqual([
      '/etc/NetworkManager/system-connections/eth0.nmconnection:2: uuid=5fb06bd0-0bb0-7ffb-45f1-d6edd65f3e03',
      '/etc/NetworkManager/system-connections/eth0.nmconnection:5: mac-address=52:54:00:12:34:56',
      '/etc/sysconfig/network-scripts/ifcfg-eth0:2: HWADDR=52:54:00:12:34:56',
      '/etc/systemd/network/10-cloud-init-eth0.network:2: MACAddress=52:54:00:12:34:56',
      '/etc/netplan/50-cloud-init.yaml:5: macaddress: 52:54:00:12:34:56',
    ]);
  });

  it("recognizes cloud-init's own files by name", () => {
    expect(isCloudInitNetworkFile('/etc/systemd/network/10-cloud-init-eth0.network')).toBe(true);
    expect(isCloudInitNetworkFile('/etc/netplan/50-cloud-init.yaml')).toBe(true);
    expect(isCloudInitNetworkFile('/etc/NetworkManager/system-connections/eth0.nmconnection')).toBe(false);
  });
});

describe('root disk layout', () => {
  it('reads disk, partition and filesystem sizes', () => {
    expect(parseRootDiskLayout('root=/dev/vda3\ndisk=/dev/vda\nvda 2147483648 disk\nvda1 1048576 part\nvda2 66060288 part\nvda3 2079309312 part\nfs=2040000000\n')).toEqual({
      rootSource: '/dev/vda3',
      diskBytes: 2147483648,
      partitionBytes: 2079309312,
      unpartitionedBytes: 1065472,
      filesystemBytes: 2040000000,
    });
  });

  it('accepts a filesystem on the whole disk and rejects garbage', () => {
    expect(parseRootDiskLayout('root=/dev/vda\ndisk=/dev/vda\nvda 1000 disk\nfs=990\n').partitionBytes).toBe(1000);
    expect(() => parseRootDiskLayout('findmnt: not found')).toThrow('could not read the root disk layout');
  });
});

describe('systemctl show of several units', () => {
  it('keys each blank-line-separated block by its Id', () => {
    const units = parseUnitProperties(
      'Id=cloud-config.service\nWants=network-online.target containerd.service\nAfter=cloud-init.service containerd.service\n\n' +
        'Id=cloud-final.service\nWants=\nAfter=cloud-config.service\n',
    );
    expect([...units.keys()]).toEqual(['cloud-config.service', 'cloud-final.service']);
    expect(units.get('cloud-config.service')).toEqual({ Id: 'cloud-config.service', Wants: 'network-online.target containerd.service', After: 'cloud-init.service containerd.service' });
    expect(units.get('cloud-final.service')?.['Wants']).toBe('');
  });
});
