import { describe, expect, it } from 'vitest';
import { factsFromManifest, parseBuildManifest } from '../../../src/core/build-facts.js';
import { KibError } from '../../../src/core/errors.js';
import { buildManifest, renderJson } from '../../../src/export/index.js';
import { debianInventory, sampleFacts, sampleInventory, sampleMeta } from './support.js';

const artifacts = [
  { file: 'rocky-9.raw', kind: 'raw' as const, sizeBytes: 20, sha256: 'b'.repeat(64), format: 'raw' as const, virtualSizeBytes: 20 },
  { file: 'rocky-9.qcow2', kind: 'qcow2' as const, sizeBytes: 10, sha256: 'a'.repeat(64), format: 'qcow2' as const, virtualSizeBytes: 20 },
  { file: 'sbom.cdx.json', kind: 'sbom' as const, sizeBytes: 5, sha256: 'c'.repeat(64) },
];
const finishedAt = '2026-09-01T10:07:00.000Z';

describe('buildManifest', () => {
  it('writes every section with its keys in a fixed order and artifacts sorted by file', () => {
    const manifest = buildManifest({ meta: sampleMeta, inventory: sampleInventory, finishedAt, exportMs: 4321, artifacts });
    expect(Object.keys(manifest)).toEqual(['schemaVersion', 'tool', 'image', 'base', 'node', 'disk', 'config', 'playbook', 'build', 'kubernetes', 'guest', 'artifacts']);
    expect(manifest).toEqual({
      schemaVersion: 2,
      tool: { name: 'kube-image-builder', version: '0.1.0' },
      image: { name: 'rocky-9', version: 'v0.3.0-2-gabc1234', commit: sampleFacts.image.commit, kubernetesVersion: '1.36.1' },
      base: sampleFacts.base,
      node: sampleFacts.node,
      disk: { sizeBytes: 20 * 1024 ** 3 },
      config: { path: '/repo/image.yaml', sha256: '1'.repeat(64) },
      playbook: { sha256: '2'.repeat(64), vars: {} },
      build: {
        date: '2026-09-01T10:00:00Z',
        startedAt: '2026-09-01T10:00:00.000Z',
        finishedAt,
        phases: { preflight: 150, base: 1200, provision: 345_000, export: 4321 },
        provisionSteps: { boot: 41_000, cloudInit: 15_000, playbook: 280_000, seal: 9000 },
        accelerator: 'tcg',
        hostArch: 'x64',
      },
      kubernetes: { packages: 'required', lockedPackages: null, installed: true, version: '1.36.1', skippedReason: null },
      guest: { os: sampleInventory.os, packages: 5, binaries: 2, images: 3 },
      artifacts: [artifacts[1], artifacts[0], artifacts[2]],
    });
    expect(Object.keys(manifest.build)).toEqual(['date', 'startedAt', 'finishedAt', 'phases', 'provisionSteps', 'accelerator', 'hostArch']);
    expect(Object.keys(manifest.build.provisionSteps)).toEqual(['boot', 'cloudInit', 'playbook', 'seal']);
  });

  it('serializes identically for equal inputs given in another order', () => {
    const a = renderJson(buildManifest({ meta: sampleMeta, inventory: sampleInventory, finishedAt, exportMs: 1, artifacts }));
    const b = renderJson(buildManifest({ meta: { ...sampleMeta }, inventory: sampleInventory, finishedAt, exportMs: 1, artifacts: [...artifacts].reverse() }));
    expect(b).toBe(a);
    expect(a.endsWith('}\n')).toBe(true);
  });

  it('writes null for a missing commit, the embedded config and a skipped Kubernetes', () => {
    const manifest = buildManifest({
      meta: { ...sampleMeta, facts: { ...sampleFacts, image: { ...sampleFacts.image, commit: null }, config: { path: null, sha256: '3'.repeat(64) } } },
      inventory: debianInventory,
      finishedAt,
      exportMs: 1,
      artifacts: [],
    });
    expect(manifest.image.commit).toBeNull();
    expect(manifest.config.path).toBeNull();
    expect(manifest.kubernetes).toEqual({ packages: 'required', lockedPackages: null, installed: false, version: null, skippedReason: debianInventory.kubernetes.skippedReason });
    expect(JSON.parse(renderJson(manifest))).toEqual(manifest);
  });

  it('reads back through the schema to the very facts it was written from', () => {
    const text = renderJson(buildManifest({ meta: sampleMeta, inventory: sampleInventory, finishedAt, exportMs: 1, artifacts }));
    expect(factsFromManifest(parseBuildManifest(text))).toEqual(sampleFacts);
  });

  it('refuses to write a manifest its readers would reject', () => {
    expect(() => buildManifest({ meta: sampleMeta, inventory: sampleInventory, finishedAt: 'yesterday', exportMs: 1, artifacts })).toThrow(/build\.finishedAt/);
  });

  it('parsing names the problems and the schema version it found', () => {
    const written = buildManifest({ meta: sampleMeta, inventory: sampleInventory, finishedAt, exportMs: 1, artifacts });
    let error: unknown;
    try {
      parseBuildManifest({ ...written, schemaVersion: 1, base: { ...written.base, sha256: 'nope' } }, '/out/manifest.json');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(KibError);
    expect((error as KibError).code).toBe('MANIFEST_INVALID');
    expect((error as KibError).message).toContain('/out/manifest.json');
    expect((error as KibError).message).toContain('base.sha256');
    expect((error as KibError).message).toContain('schemaVersion');
    expect((error as KibError).hint).toContain('schemaVersion 1');
    expect(() => parseBuildManifest('{not json')).toThrow(/not JSON/);
  });
});
