import { describe, expect, it } from 'vitest';
import { KibError } from '../../../src/core/errors.js';
import type { BuildManifest } from '../../../src/core/build-facts.js';
import { expectedFromManifest, expectedFromRelease, parseReleaseFile } from '../../../src/verify/expected.js';

// Written as src/export writes it; `satisfies` makes a change to the schema fail this type check.
const manifest = {
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

describe('expectedFromManifest', () => {
  it("reads the export phase's manifest", () => {
    expect(expectedFromManifest(manifest)).toEqual({
      osFamily: 'debian',
      kubernetesVersion: '1.36.1',
      kubernetesInstalled: false,
      kubernetesSkippedReason: 'pkgs.k8s.io is not reachable from the build VM',
      selinux: 'permissive',
      firewall: true,
      imageVersion: '0.0.0-dev+abc1234',
    });
  });

  it('reads the text of manifest.json as well as its parsed value', () => {
    expect(expectedFromManifest(JSON.stringify(manifest))).toEqual(expectedFromManifest(manifest));
  });

  it('lets overrides from the build definition win and ignores undefined ones', () => {
    const e = expectedFromManifest(manifest, { selinux: 'enforcing', firewall: false, diskGrownToBytes: 4 * 1024 ** 3, osFamily: undefined });
    expect(e.selinux).toBe('enforcing');
    expect(e.firewall).toBe(false);
    expect(e.diskGrownToBytes).toBe(4 * 1024 ** 3);
    expect(e.osFamily).toBe('debian');
  });

  it('rejects a manifest that does not match the schema, naming the fields, instead of guessing', () => {
    let error: unknown;
    try {
      expectedFromManifest({ image: { kubernetesVersion: 'v1.36.1', version: 42 }, kubernetes: 'yes', guest: { os: { id: 'rocky' } } }, {}, '/a/manifest.json');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(KibError);
    expect((error as KibError).code).toBe('MANIFEST_INVALID');
    expect((error as KibError).message).toContain('/a/manifest.json');
    expect((error as KibError).message).toMatch(/image\.version|image\.kubernetesVersion/);
    expect(() => expectedFromManifest(null)).toThrow(KibError);
  });
});

describe('the release file', () => {
  // As the playbook's release role writes it: values through Ansible's `quote` (shell quoting).
  const text = [
    '# Managed by kube-image-builder',
    'IMAGE_NAME=rocky-9',
    "IMAGE_VERSION='v0.4.0'",
    'OS_FAMILY=redhat',
    'KUBERNETES_VERSION=1.36.1',
    'KUBERNETES_INSTALLED=false',
    `KUBERNETES_SKIPPED_REASON='the build VM can'"'"'t reach pkgs.k8s.io'`,
    'SELINUX=enforcing',
    'FIREWALL=false',
    'GIT_COMMIT="abc\\"d"',
    'not a pair',
    "BROKEN='unbalanced",
  ].join('\n');

  it('reads values the way a shell would', () => {
    expect(parseReleaseFile(text)).toEqual({
      IMAGE_NAME: 'rocky-9',
      IMAGE_VERSION: 'v0.4.0',
      OS_FAMILY: 'redhat',
      KUBERNETES_VERSION: '1.36.1',
      KUBERNETES_INSTALLED: 'false',
      KUBERNETES_SKIPPED_REASON: "the build VM can't reach pkgs.k8s.io",
      SELINUX: 'enforcing',
      FIREWALL: 'false',
      GIT_COMMIT: 'abc"d',
    });
  });

  it('gives a complete expectation', () => {
    expect(expectedFromRelease(text)).toEqual({
      osFamily: 'redhat',
      kubernetesVersion: '1.36.1',
      kubernetesInstalled: false,
      kubernetesSkippedReason: "the build VM can't reach pkgs.k8s.io",
      selinux: 'enforcing',
      firewall: false,
      imageVersion: 'v0.4.0',
    });
  });
});
