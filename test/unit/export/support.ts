import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BuildFacts } from '../../../src/core/build-facts.js';
import type { ExportMeta, GuestInventory } from '../../../src/export/index.js';
import { run } from '../../../src/process/index.js';

/** A temp dir removed after the test file. */
export async function makeTempDir(prefix: string): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `kib-export-${prefix}-`));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * A small qcow2 overlay on a qcow2 base, each holding different data, like a provisioned disk
 * on top of a cloud image: base 0xab at 0–2 MiB, overlay 0xcd at 16–20 MiB, 64 MiB virtual.
 */
export async function makeOverlayDisk(dir: string): Promise<{ base: string; overlay: string; virtualSizeBytes: number }> {
  const base = join(dir, 'base.qcow2');
  const overlay = join(dir, 'overlay.qcow2');
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', base, '64M']);
  await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0xab 0 2M', base]);
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay]);
  await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0xcd 16M 4M', overlay]);
  return { base, overlay, virtualSizeBytes: 64 * 1024 * 1024 };
}

export const sampleInventory: GuestInventory = {
  os: { id: 'rocky', versionId: '9.6', prettyName: 'Rocky Linux 9.6 (Blue Onyx)' },
  packages: [
    { name: 'kernel-core', version: '5.14.0-570.el9', arch: 'x86_64', manager: 'rpm' },
    { name: 'containerd.io', version: '1.7.27-3.1.el9', arch: 'x86_64', manager: 'rpm' },
    { name: 'shadow-utils', version: '2:4.9-12.el9', arch: 'x86_64', manager: 'rpm' },
    { name: 'gpg-pubkey', version: '350d275d-6279464b', arch: '(none)', manager: 'rpm' },
    { name: 'gpg-pubkey', version: '350d275d-6279464b', arch: '(none)', manager: 'rpm' },
  ],
  binaries: [
    { name: 'kubelet', path: '/usr/bin/kubelet', version: 'v1.36.1', sha256: 'a'.repeat(64) },
    { name: 'kubeadm', path: '/usr/bin/kubeadm', version: 'v1.36.1', sha256: 'b'.repeat(64) },
  ],
  images: [
    { ref: 'registry.k8s.io/kube-apiserver:v1.36.1', digest: `sha256:${'c'.repeat(64)}` },
    { ref: 'registry.k8s.io/pause:3.10', digest: `sha256:${'d'.repeat(64)}` },
    { ref: 'localhost:5000/team/tool:1.0@sha256:' + 'e'.repeat(64), digest: '' },
  ],
  kubernetes: { installed: true, skippedReason: null, version: '1.36.1' },
};

export const debianInventory: GuestInventory = {
  os: { id: 'debian', versionId: '12', prettyName: 'Debian GNU/Linux 12 (bookworm)' },
  packages: [
    { name: 'libc6', version: '2.36-9+deb12u10', arch: 'amd64', manager: 'dpkg' },
    { name: 'libstdc++6', version: '12.2.0-14+deb12u1', arch: 'amd64', manager: 'dpkg' },
    { name: 'dpkg', version: '1.21.22', arch: 'amd64', manager: 'dpkg' },
    { name: 'login', version: '1:4.13+dfsg1-1+b1', arch: 'amd64', manager: 'dpkg' },
  ],
  binaries: [],
  images: [],
  kubernetes: { installed: false, skippedReason: 'the Kubernetes package source is not reachable from the build VM', version: null },
};

export const sampleFacts: BuildFacts = {
  image: { name: 'rocky-9', version: 'v0.3.0-2-gabc1234', commit: '0123456789abcdef0123456789abcdef01234567' },
  kubernetes: { version: '1.36.1', packages: 'required', lockedPackages: null },
  node: { selinux: 'permissive', firewall: true, network: { podCidrs: ['10.244.0.0/16'], serviceCidrs: ['10.96.0.0/12'], overlayPorts: ['4789/udp', '8472/udp', '179/tcp'] } },
  base: { url: 'https://example.org/Rocky-9-GenericCloud-Base.latest.x86_64.qcow2', sha256: 'f'.repeat(64), osFamily: 'redhat' },
  disk: { sizeBytes: 20 * 1024 ** 3 },
  config: { path: '/repo/image.yaml', sha256: '1'.repeat(64) },
  playbook: { sha256: '2'.repeat(64), vars: {} },
  tool: { name: 'kube-image-builder', version: '0.1.0' },
  build: { date: '2026-09-01T10:00:00Z', accelerator: 'tcg', hostArch: 'x64' },
};

export const sampleMeta: ExportMeta = {
  facts: sampleFacts,
  startedAt: '2026-09-01T10:00:00.000Z',
  phasesMs: { preflight: 150, base: 1200, provision: 345_000 },
  provisionStepsMs: { seal: 9000, boot: 41_000, playbook: 280_000, cloudInit: 15_000 },
};
