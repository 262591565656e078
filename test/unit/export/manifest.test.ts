import { describe, expect, it } from 'vitest';
import { buildManifest, renderJson } from '../../../src/export/index.js';
import { debianInventory, sampleInventory, sampleMeta } from './support.js';

const artifacts = [
  { file: 'rocky-9.raw', kind: 'raw' as const, sizeBytes: 20, sha256: 'b'.repeat(64), format: 'raw' as const, virtualSizeBytes: 20 },
  { file: 'rocky-9.qcow2', kind: 'qcow2' as const, sizeBytes: 10, sha256: 'a'.repeat(64), format: 'qcow2' as const, virtualSizeBytes: 20 },
  { file: 'sbom.cdx.json', kind: 'sbom' as const, sizeBytes: 5, sha256: 'c'.repeat(64) },
];

describe('buildManifest', () => {
  it('writes every section with its keys in a fixed order and artifacts sorted by file', () => {
    const manifest = buildManifest({ meta: sampleMeta, inventory: sampleInventory, finishedAt: '2026-09-01T10:07:00.000Z', exportMs: 4321, artifacts });
    expect(Object.keys(manifest)).toEqual(['schemaVersion', 'tool', 'image', 'base', 'node', 'config', 'playbook', 'build', 'kubernetes', 'guest', 'artifacts']);
    expect(manifest).toEqual({
      schemaVersion: 1,
      tool: { name: 'kube-image-builder', version: '0.1.0' },
      image: { name: 'rocky-9', version: 'v0.3.0-2-gabc1234', commit: sampleMeta.commit, kubernetesVersion: '1.36.1' },
      base: sampleMeta.base,
      node: { selinux: 'permissive', firewall: true },
      config: { path: '/repo/image.yaml', sha256: '1'.repeat(64) },
      playbook: { sha256: '2'.repeat(64) },
      build: {
        startedAt: '2026-09-01T10:00:00.000Z',
        finishedAt: '2026-09-01T10:07:00.000Z',
        phases: { preflight: 150, base: 1200, provision: 345_000, export: 4321 },
        provisionSteps: { boot: 41_000, cloudInit: 15_000, playbook: 280_000, seal: 9000 },
        accelerator: 'tcg',
        hostArch: 'x64',
      },
      kubernetes: { installed: true, version: '1.36.1', skippedReason: null },
      guest: { os: sampleInventory.os, packages: 5, binaries: 2, images: 3 },
      artifacts: [artifacts[1], artifacts[0], artifacts[2]],
    });
    expect(Object.keys(manifest.build)).toEqual(['startedAt', 'finishedAt', 'phases', 'provisionSteps', 'accelerator', 'hostArch']);
    expect(Object.keys(manifest.build.provisionSteps)).toEqual(['boot', 'cloudInit', 'playbook', 'seal']);
  });

  it('serializes identically for equal inputs given in another order', () => {
    const a = renderJson(buildManifest({ meta: sampleMeta, inventory: sampleInventory, finishedAt: 'x', exportMs: 1, artifacts }));
    const b = renderJson(buildManifest({ meta: { ...sampleMeta }, inventory: sampleInventory, finishedAt: 'x', exportMs: 1, artifacts: [...artifacts].reverse() }));
    expect(b).toBe(a);
    expect(a.endsWith('}\n')).toBe(true);
  });

  it('writes null for a missing commit, the embedded config and a skipped Kubernetes', () => {
    const manifest = buildManifest({
      meta: { ...sampleMeta, commit: undefined, config: { path: undefined, sha256: '3'.repeat(64) } },
      inventory: debianInventory,
      finishedAt: 'x',
      exportMs: 1,
      artifacts: [],
    });
    expect(manifest.image.commit).toBeNull();
    expect(manifest.config.path).toBeNull();
    expect(manifest.kubernetes).toEqual({ installed: false, version: null, skippedReason: debianInventory.kubernetes.skippedReason });
    expect(JSON.parse(renderJson(manifest))).toEqual(manifest);
  });
});
