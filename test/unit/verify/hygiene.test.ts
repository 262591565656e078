import { describe, expect, it } from 'vitest';
import type { ExpectedImage } from '../../../src/verify/expected.js';
import { hygieneChecks, type ArtifactDirEntry, type ArtifactFs, type ArtifactStat } from '../../../src/verify/hygiene.js';
import { runChecks } from '../../../src/verify/runner.js';

type Node = string | { dir: true } | { symlink: string };

/** An artifact's root filesystem as a path → content map; parent directories are implied. */
function memoryFs(tree: Record<string, Node>): ArtifactFs {
  const nodes = new Map<string, Node>([['/', { dir: true }]]);
  for (const [path, node] of Object.entries(tree)) {
    nodes.set(path, node);
    for (let at = path.lastIndexOf('/'); at > 0; at = path.lastIndexOf('/', at - 1)) {
      if (!nodes.has(path.slice(0, at))) nodes.set(path.slice(0, at), { dir: true });
    }
  }
  const statOf = (node: Node): ArtifactStat =>
    typeof node === 'string' ? { type: 'file', sizeBytes: Buffer.byteLength(node) } : 'dir' in node ? { type: 'dir', sizeBytes: 4096 } : { type: 'symlink', sizeBytes: node.symlink.length };
  return {
    async readFile(path) {
      const node = nodes.get(path);
      return typeof node === 'string' ? node : undefined;
    },
    async stat(path) {
      const node = nodes.get(path);
      return node === undefined ? undefined : statOf(node);
    },
    async listDir(path) {
      const node = nodes.get(path);
      if (node === undefined || typeof node === 'string' || !('dir' in node)) return undefined;
      const prefix = path === '/' ? '/' : `${path}/`;
      const entries: ArtifactDirEntry[] = [];
      for (const [child, childNode] of nodes) {
        if (child.startsWith(prefix) && child !== path && !child.slice(prefix.length).includes('/')) {
          entries.push({ name: child.slice(prefix.length), type: statOf(childNode).type });
        }
      }
      return entries;
    },
  };
}

const expected: ExpectedImage = {
  osFamily: 'redhat',
  kubernetesVersion: '1.36.1',
  kubernetesInstalled: true,
  kubernetesSkippedReason: null,
  selinux: 'permissive',
  firewall: true,
};

function sealedRocky(): Record<string, Node> {
  return {
    '/etc/machine-id': '',
    '/etc/hostname': '',
    '/etc/passwd': 'root:x:0:0:root:/root:/bin/bash\nrocky:x:1000:1000:Rocky:/home/rocky:/bin/bash\n',
    '/etc/ssh/sshd_config': 'PermitRootLogin no\n',
    '/etc/ssh/sshd_config.d/50-redhat.conf': 'Include /etc/crypto-policies/back-ends/opensshserver.config\n',
    '/etc/sysconfig/network-scripts/ifcfg-eth0': 'BOOTPROTO=dhcp\nDEVICE=eth0\nONBOOT=yes\n',
    '/etc/NetworkManager/system-connections': { dir: true },
    '/var/lib/cloud': { dir: true },
    '/var/log/messages': '',
    '/var/log/audit/audit.log': 'x'.repeat(1000),
    '/var/log/cloud-init.log': '',
    '/tmp': { dir: true },
    '/var/tmp': { dir: true },
    '/root/.ssh': { dir: true },
    '/home/rocky': { dir: true },
  };
}

async function run(tree: Record<string, Node>, buildUser: string | null = 'kib') {
  return runChecks(hygieneChecks, buildUser === null ? { fs: memoryFs(tree), expected } : { fs: memoryFs(tree), expected, buildUser });
}

const failing = (results: { id: string; status: string }[]): string[] => results.filter((r) => r.status === 'fail').map((r) => r.id);

describe('hygieneChecks on the artifact', () => {
  it('pass on a sealed image', async () => {
    const results = await run(sealedRocky());
    expect(results.filter((r) => r.status !== 'pass')).toEqual([]);
    expect(results).toHaveLength(hygieneChecks.length);
  });

  it('skip the build-user check, with its reason, when the user is not known', async () => {
    const results = await run(sealedRocky(), null);
    expect(results.filter((r) => r.status === 'skip').map((r) => [r.id, r.detail])).toEqual([
      ['hygiene/no-build-user', 'the build user is not known (pass it from the build manifest or log)'],
    ]);
  });

  it('fail exactly where a booted (unsealed) copy differs', async () => {
    // What a first boot leaves behind: the reason these checks must not run on the verify VM.
    const booted = {
      ...sealedRocky(),
      '/etc/machine-id': '4c4c4544004d3510804bb4c04f333832\n',
      '/etc/hostname': 'verify-1\n',
      '/etc/ssh/ssh_host_ed25519_key': 'PRIVATE',
      '/etc/ssh/ssh_host_ed25519_key.pub': 'ssh-ed25519 AAAA',
      '/var/lib/cloud/instance': { symlink: '/var/lib/cloud/instances/iid-verify-1' },
      '/var/lib/cloud/instances/iid-verify-1/boot-finished': '1',
      '/var/lib/cloud/data/instance-id': 'iid-verify-1',
      '/var/log/cloud-init.log': 'DEBUG ...',
      '/etc/NetworkManager/system-connections/cloud-init-eth0.nmconnection': '[connection]\nuuid=1dd9a779\n[ethernet]\nmac-address=52:54:00:12:34:56\n',
    };
    expect(failing(await run(booted)).sort()).toEqual(
      [
        'hygiene/no-ssh-host-keys',
        'hygiene/machine-id-empty',
        'hygiene/no-cloud-init-instance',
        'hygiene/no-cloud-init-logs',
        'hygiene/hostname-generic',
        'network/artifact-no-mac-bound-config',
      ].sort(),
    );
  });

  it('fail on build leftovers: the build user, its keys and history, working files, a full /tmp', async () => {
    const dirty = {
      ...sealedRocky(),
      '/etc/passwd': `${String(sealedRocky()['/etc/passwd'])}kib:x:1001:1001::/home/kib:/bin/bash\n`,
      '/etc/sudoers.d/kib': 'kib ALL=(ALL) NOPASSWD:ALL\n',
      '/home/kib/.ssh/authorized_keys': 'ssh-ed25519 AAAA kib',
      '/root/.bash_history': 'dnf install -y kubeadm\n',
      '/var/lib/kib/inventory.json': '{}',
      '/tmp/ansible-tmp-1/x': 'x',
      '/var/tmp/core.1234': 'ELF',
      '/var/lib/systemd/coredump/core.kubelet.0.zst': 'x',
      '/etc/cloud/cloud-init.disabled': '',
      '/etc/systemd/system/containerd.service.d/http-proxy.conf': '[Service]\nEnvironment=HTTP_PROXY=http://proxy:3128\n',
    };
    const results = await run(dirty);
    expect(failing(results).sort()).toEqual(
      [
        'hygiene/no-build-user',
        'hygiene/no-authorized-keys',
        'hygiene/no-shell-history',
        'hygiene/no-build-leftovers',
        'hygiene/tmp-empty',
        'hygiene/no-core-dumps',
        'hygiene/cloud-init-enabled',
      ].sort(),
    );
    expect(results.find((r) => r.id === 'hygiene/no-build-user')?.detail).toBe('/etc/passwd has kib, /home/kib, /etc/sudoers.d/kib');
    expect(results.find((r) => r.id === 'hygiene/no-core-dumps')?.detail).toBe('/var/lib/systemd/coredump/core.kubelet.0.zst, /var/tmp/core.1234');
  });

  it('fail a missing machine-id and accept "uninitialized"', async () => {
    const tree = sealedRocky();
    delete tree['/etc/machine-id'];
    expect((await run(tree)).find((r) => r.id === 'hygiene/machine-id-empty')?.detail).toBe('/etc/machine-id is missing; systemd expects an empty file');
    const results = await run({ ...sealedRocky(), '/etc/machine-id': 'uninitialized\n' });
    expect(results.find((r) => r.id === 'hygiene/machine-id-empty')?.status).toBe('pass');
  });

  it('fail when /var/log holds more than 200 MiB, counting subdirectories', async () => {
    const big = 'x'.repeat(1024 * 1024);
    const tree = sealedRocky();
    for (let i = 0; i < 201; i++) tree[`/var/log/journal/abc/system@${i}.journal`] = big;
    const result = (await run(tree)).find((r) => r.id === 'hygiene/var-log-size');
    expect(result?.status).toBe('fail');
    expect(result?.detail).toBe('201.0 MiB');
  });
});
