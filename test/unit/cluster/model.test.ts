import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  caCertHash,
  checkMemory,
  generateBootstrapToken,
  generateClusterCa,
  kubeadmJoinArgs,
  parseMemAvailable,
  planNodes,
  renderBridgeCniConfig,
  renderBootstrapScript,
  renderKubeadmInitConfig,
  renderNodeUserData,
  renderPodRoutes,
  renderRegistryHostsToml,
  validateClusterName,
  validateNodeCount,
} from '../../../src/cluster/index.js';
import { readClusterSnapshot } from '../../../src/cluster/cluster.js';
import { KibError } from '../../../src/core/errors.js';

const nodes = planNodes('demo', 2, '/state/clusters/demo');
const [node1, node2] = nodes as [(typeof nodes)[0], (typeof nodes)[0]];

describe('cluster plan', () => {
  it('gives node i a fixed MAC, address, tap, pod CIDR and persistent run id', () => {
    expect(nodes).toEqual([
      { name: 'node1', index: 1, mac: '52:54:00:4b:00:01', ip: '10.77.0.11', tap: 'tap1', podCidr: '10.244.1.0/24', role: 'control-plane', runId: 'c-demo-node1', diskPath: '/state/clusters/demo/nodes/node1/demo-node1.qcow2' },
      { name: 'node2', index: 2, mac: '52:54:00:4b:00:02', ip: '10.77.0.12', tap: 'tap2', podCidr: '10.244.2.0/24', role: 'worker', runId: 'c-demo-node2', diskPath: '/state/clusters/demo/nodes/node2/demo-node2.qcow2' },
    ]);
  });

  it('rejects bad names and node counts before anything starts', () => {
    for (const bad of ['', 'Demo', '1abc', 'a_b', 'abc-', 'a'.repeat(21)]) expect(() => validateClusterName(bad), bad).toThrow(KibError);
    expect(() => validateClusterName('dev-1')).not.toThrow();
    expect(() => validateNodeCount(0)).toThrow(/--nodes must be a whole number from 1 to 9, got 0/);
    expect(() => validateNodeCount(1.5)).toThrow(KibError);
    expect(() => validateNodeCount(10)).toThrow(KibError);
  });

  it('refuses N nodes that do not fit in MemAvailable with headroom', () => {
    expect(parseMemAvailable('MemTotal: 100 kB\nMemAvailable:    4194304 kB\n')).toBe(4194304);
    expect(() => checkMemory(2, 1024, 3 * 1024 * 1024)).not.toThrow();
    expect(() => checkMemory(3, 1024, 3 * 1024 * 1024)).toThrow(/3 node\(s\) of 1024 MiB need 4096 MiB with 1024 MiB headroom, but only 3072 MiB are available/);
  });
});

describe('bootstrap material', () => {
  it('makes kubeadm-shaped tokens', () => {
    for (let i = 0; i < 20; i += 1) expect(generateBootstrapToken()).toMatch(/^[a-z0-9]{6}\.[a-z0-9]{16}$/);
    expect(generateBootstrapToken(() => 0)).toBe('aaaaaa.aaaaaaaaaaaaaaaa');
  });

  it('hashes the CA public key the way kubeadm join checks it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kib-ca-'));
    try {
      const ca = await generateClusterCa(dir);
      expect(ca.hash).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(caCertHash(ca.certPem)).toBe(ca.hash);
      const cert = new X509Certificate(ca.certPem);
      expect(cert.ca).toBe(true);
      expect(cert.subject).toBe('CN=kubernetes');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('writes an init config with node 1 as the advertise address and a never-expiring token', () => {
    const docs = renderKubeadmInitConfig({ node: node1, token: 'abcdef.0123456789abcdef', kubernetesVersion: '1.37.1' }).split('---\n').map((d) => parse(d) as Record<string, unknown>);
    expect(docs[0]).toMatchObject({
      kind: 'InitConfiguration',
      bootstrapTokens: [{ token: 'abcdef.0123456789abcdef', ttl: '0s' }],
      localAPIEndpoint: { advertiseAddress: '10.77.0.11', bindPort: 6443 },
      nodeRegistration: { name: 'node1' },
    });
    expect(docs[1]).toMatchObject({ kind: 'ClusterConfiguration', kubernetesVersion: 'v1.37.1', controlPlaneEndpoint: '10.77.0.11:6443', networking: { podSubnet: '10.244.0.0/16' } });
    expect((docs[1] as { apiServer: { certSANs: string[] } }).apiServer.certSANs).toContain('127.0.0.1');
  });

  it('joins through node 1 with the token and the CA hash, never skipping CA verification', () => {
    const args = kubeadmJoinArgs(node1, node2, 'abcdef.0123456789abcdef', 'sha256:00ff');
    expect(args).toEqual(['kubeadm', 'join', '10.77.0.11:6443', '--token', 'abcdef.0123456789abcdef', '--discovery-token-ca-cert-hash', 'sha256:00ff', '--node-name', 'node2']);
    const script = renderBootstrapScript({ node: node2, nodes, token: 'abcdef.0123456789abcdef', ca: { certPem: '', keyPem: '', hash: 'sha256:00ff' }, cni: { kind: 'kib-bridge' } });
    expect(script).toContain('kubeadm join 10.77.0.11:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:00ff --node-name node2');
    expect(script).not.toContain('unsafe-skip');
    expect(renderBootstrapScript({ node: node1, nodes, token: 't', ca: { certPem: '', keyPem: '', hash: 'h' }, cni: { kind: 'manifest', text: '' } })).toContain('kubectl --kubeconfig /etc/kubernetes/admin.conf apply -f /etc/kib/cni.yaml');
  });

  it('gives each node a bridge CNI on its own /24 and routes to the others', () => {
    const cni = JSON.parse(renderBridgeCniConfig(node2)) as { plugins: { type: string; bridge?: string; ipam?: { ranges: { subnet: string; gateway: string }[][] } }[] };
    expect(cni.plugins[0]).toMatchObject({ type: 'bridge', bridge: 'cni0', ipam: { type: 'host-local', ranges: [[{ subnet: '10.244.2.0/24', gateway: '10.244.2.1' }]] } });
    expect(renderPodRoutes(node2, nodes)).toBe("#!/bin/sh\n# Written by kib: each other node's pod CIDR is reached through that node.\nset -e\nip route replace 10.244.1.0/24 via 10.77.0.11\n");
    expect(renderRegistryHostsToml()).toContain('server = "http://10.77.0.1:5000"');
  });

  it('puts the CA and the init config on node 1 only, and the user\'s files on every node', () => {
    const common = { nodes, user: 'kib', publicKey: 'ssh-ed25519 AAAA kib', token: 'abcdef.0123456789abcdef', ca: { certPem: 'CERT', keyPem: 'KEY', hash: 'sha256:00' }, kubernetesVersion: undefined, cni: { kind: 'kib-bridge' as const }, registry: true, extraFiles: [{ path: '/usr/local/bin/x', content: 'x' }] };
    const user1 = renderNodeUserData({ ...common, node: node1 });
    const user2 = renderNodeUserData({ ...common, node: node2 });
    expect(user1.startsWith('#cloud-config\n')).toBe(true);
    const paths = (text: string): string[] => (parse(text) as { write_files: { path: string }[] }).write_files.map((f) => f.path);
    expect(paths(user1)).toEqual(['/etc/kubernetes/pki/ca.crt', '/etc/kubernetes/pki/ca.key', '/etc/kib/kubeadm-init.yaml', '/etc/cni/net.d/10-kib-bridge.conflist', '/etc/kib/pod-routes.sh', '/etc/containerd/certs.d/10.77.0.1:5000/hosts.toml', '/usr/local/bin/x', '/etc/kib/bootstrap.sh']);
    expect(paths(user2)).toEqual(['/etc/cni/net.d/10-kib-bridge.conflist', '/etc/kib/pod-routes.sh', '/etc/containerd/certs.d/10.77.0.1:5000/hosts.toml', '/usr/local/bin/x', '/etc/kib/bootstrap.sh']);
    expect(parse(user2)).toMatchObject({ hostname: 'node2', users: [{ name: 'kib', ssh_authorized_keys: ['ssh-ed25519 AAAA kib'] }], runcmd: [['sh', '/etc/kib/bootstrap.sh']] });
  });
});

describe('cluster snapshots', () => {
  it('refuses a snapshot from another kib version before anything starts', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kib-snap-'));
    try {
      const { writeFile } = await import('node:fs/promises');
      await writeFile(join(dir, 'cluster.json'), JSON.stringify({ version: 1, name: 'demo', nodes: [], netns: 'kib-demo', kibVersion: '0.0.1' }));
      await expect(readClusterSnapshot(dir, '0.1.0')).rejects.toMatchObject({ code: 'SNAPSHOT_KIB_VERSION', message: expect.stringContaining('saved by kib 0.0.1; this is kib 0.1.0') });
      await expect(readClusterSnapshot(join(dir, 'nope'), '0.1.0')).rejects.toMatchObject({ code: 'SNAPSHOT_MISSING' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
