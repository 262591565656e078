import type { BuildManifest } from '../../src/core/build-facts.js';

/**
 * manifest.json of an offline Debian 12 build (Kubernetes skipped by the package-source gate),
 * written as src/export writes it; `satisfies` makes a change to the schema fail the type check.
 */
export const offlineDebianManifest = {
  schemaVersion: 2,
  tool: { name: 'kube-image-builder', version: '0.1.0' },
  image: { name: 'debian-12-test', version: '0.0.0-dev+abc1234', commit: 'abc1234', kubernetesVersion: '1.36.1' },
  base: { url: 'file:///cache/debian-12.qcow2', sha256: 'a'.repeat(64), osFamily: 'debian' },
  node: { selinux: 'permissive', firewall: true, network: { podCidrs: ['10.244.0.0/16'], serviceCidrs: ['10.96.0.0/12'], overlayPorts: ['4789/udp', '8472/udp', '179/tcp'] } },
  disk: { sizeBytes: 8 * 1024 ** 3 },
  config: { path: null, sha256: 'b'.repeat(64) },
  playbook: { sha256: 'c'.repeat(64), vars: {} },
  build: {
    date: '2026-11-21T10:00:00Z',
    startedAt: '2026-11-21T10:00:00Z',
    finishedAt: '2026-11-21T10:09:00Z',
    phases: { preflight: 0, base: 1, provision: 2, export: 3 },
    provisionSteps: {},
    accelerator: 'tcg',
    hostArch: 'x64',
  },
  kubernetes: { packages: 'auto', lockedPackages: null, installed: false, version: null, skippedReason: 'pkgs.k8s.io is not reachable from the build VM' },
  guest: { os: { id: 'debian', versionId: '12', prettyName: 'Debian GNU/Linux 12 (bookworm)' }, packages: 300, binaries: 2, images: 0 },
  artifacts: [],
} satisfies BuildManifest;
