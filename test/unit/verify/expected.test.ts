import { describe, expect, it } from 'vitest';
import { KibError } from '../../../src/core/errors.js';
import { offlineDebianManifest } from '../../support/manifests.js';
import { expectedFromManifest, expectedFromRelease, parseReleaseFile } from '../../../src/verify/expected.js';

const manifest = offlineDebianManifest;

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
