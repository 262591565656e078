import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadBuildSpec, parseBuildSpec } from '../../../src/config/load.js';
import { applyLock, type Lock, type LockedKubernetes, lockPathFor, parseLock, readLock, renderLock, requireKubernetesVersion, updateLock, writeLock } from '../../../src/config/lock.js';
import { ConfigError } from '../../../src/core/errors.js';

const REPO_ROOT = resolve(import.meta.dirname, '../../..');
const URL_A = 'https://example.org/images/base-9.8.qcow2';
const SHA_A = 'a'.repeat(64);
const SHA_B = 'b'.repeat(64);
const spec = (extra = ''): ReturnType<typeof parseBuildSpec> =>
  parseBuildSpec(`name: x\nbase:\n  url: ${URL_A}\n${extra}kubernetes:\n  version: 1.36.1\n`, { configPath: '/p/image.yaml', cwd: '/p' });
const lockFor = (url: string, sha256: string): Lock => ({ lockVersion: 1, base: { url, sha256, sizeBytes: 645988352 } });

const K8S_137: LockedKubernetes = {
  version: '1.37.10',
  series: 'v1.37',
  osFamily: 'redhat',
  arch: 'x86_64',
  source: 'http://127.0.0.1:1/core:/stable:/v1.37/rpm/',
  packages: {
    kubeadm: '1.37.10-150500.1.2',
    kubelet: '1.37.10-150500.1.2',
    kubectl: '1.37.10-150500.1.2',
    'cri-tools': '1.37.1-150500.1.1',
    'kubernetes-cni': '1.10.0-150500.1.1',
  },
};
const k8sSpec = (kubernetes: string, osFamily = 'redhat'): ReturnType<typeof parseBuildSpec> =>
  parseBuildSpec(`name: x\nbase:\n  url: ${URL_A}\n  osFamily: ${osFamily}\nkubernetes:\n${kubernetes}`, { configPath: '/p/image.yaml', cwd: '/p' });

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kib-lock-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('lockPathFor', () => {
  it('replaces the YAML extension with .lock', () => {
    expect(lockPathFor('/p/image.yaml')).toBe('/p/image.lock');
    expect(lockPathFor('/p/node.yml')).toBe('/p/node.lock');
    expect(lockPathFor('/p/definition')).toBe('/p/definition.lock');
  });
});

describe('reading and writing', () => {
  it('round-trips a lock and leaves no temporary file behind', async () => {
    const path = join(dir, 'image.lock');
    await writeLock(path, lockFor(URL_A, SHA_A));
    expect(await readLock(path)).toEqual(lockFor(URL_A, SHA_A));
    await writeLock(path, lockFor(URL_A, SHA_B));
    expect(await readLock(path)).toEqual(lockFor(URL_A, SHA_B));
    expect(await readdir(dir)).toEqual(['image.lock']);
  });

  it('returns undefined when there is no lock', async () => {
    expect(await readLock(join(dir, 'image.lock'))).toBeUndefined();
  });

  it('rejects a malformed lock with every problem located', async () => {
    const path = join(dir, 'image.lock');
    await writeFile(path, 'lockVersion: 2\nbase:\n  url: x\n  sha256: nothex\n  size: 3\n');
    const error = await readLock(path).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).file).toBe(path);
    expect((error as ConfigError).issues.map((issue) => issue.path).sort()).toEqual(['base.sha256', 'base.size', 'base.sizeBytes', 'lockVersion']);
  });
});

describe('the Kubernetes section', () => {
  it('round-trips, and a lock without it (written before it existed) still reads', async () => {
    const path = join(dir, 'image.lock');
    await writeLock(path, { ...lockFor(URL_A, SHA_A), kubernetes: K8S_137 });
    expect(await readLock(path)).toEqual({ ...lockFor(URL_A, SHA_A), kubernetes: K8S_137 });
    expect(renderLock({ ...lockFor(URL_A, SHA_A), kubernetes: K8S_137 })).toContain('    cri-tools: "1.37.1-150500.1.1"\n');
    expect(parseLock(renderLock(lockFor(URL_A, SHA_A)))).toEqual(lockFor(URL_A, SHA_A));
  });

  it('rejects a package list with a missing or malformed entry', () => {
    const { 'kubernetes-cni': _cni, ...four } = K8S_137.packages;
    const text = renderLock({ ...lockFor(URL_A, SHA_A), kubernetes: { ...K8S_137, packages: { ...four, kubeadm: 'not a version!' } as LockedKubernetes['packages'] } });
    const error = (() => {
      try {
        return parseLock(text.replace(/^ {4}kubernetes-cni:.*\n/m, ''), 'image.lock');
      } catch (caught) {
        return caught;
      }
    })();
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).issues.map((issue) => issue.path).sort()).toEqual(['kubernetes.packages.kubeadm', 'kubernetes.packages.kubernetes-cni']);
  });

  it('gives a series its release and every package its exact build', () => {
    const series = k8sSpec('  series: "1.37"\n');
    const { spec: locked, notes } = applyLock(series, { ...lockFor(URL_A, SHA_A), kubernetes: K8S_137 });
    expect(notes).toEqual([]);
    expect(locked.kubernetes).toEqual({ version: '1.37.10', series: '1.37', pinnedBy: 'series', packages: 'required', lockedPackages: K8S_137.packages });
    expect(requireKubernetesVersion(locked)).toBe('1.37.10');
    expect(locked.configSha256).not.toBe(series.configSha256);
  });

  it('gives a pinned release its exact builds when the lock is for that release', () => {
    const { spec: locked, notes } = applyLock(k8sSpec('  version: 1.37.10\n'), { ...lockFor(URL_A, SHA_A), kubernetes: K8S_137 });
    expect(notes).toEqual([]);
    expect(locked.kubernetes.lockedPackages).toEqual(K8S_137.packages);
  });

  it('does not apply a stale Kubernetes section, says so, and still applies the base part', () => {
    // image.yaml moved on to another release after the lock was written.
    const pinned = k8sSpec('  version: 1.37.11\n');
    const { spec: applied, notes } = applyLock(pinned, { ...lockFor(URL_A, SHA_A), kubernetes: K8S_137 }, '/p/image.lock');
    expect(applied.base.sha256).toBe(SHA_A);
    expect(applied.kubernetes).toEqual(pinned.kubernetes);
    expect(notes).toEqual(['image.lock records Kubernetes 1.37.10 (v1.37), but image.yaml asks for version 1.37.11; the lock\'s packages do not apply, run `kib lock --update`']);

    const otherSeries = applyLock(k8sSpec('  series: "1.38"\n'), { ...lockFor(URL_A, SHA_A), kubernetes: K8S_137 });
    expect(otherSeries.spec.kubernetes.version).toBeUndefined();
    expect(otherSeries.notes[0]).toContain('asks for series "1.38"');

    const otherFamily = applyLock(k8sSpec('  version: 1.37.10\n', 'debian'), { ...lockFor(URL_A, SHA_A), kubernetes: K8S_137 });
    expect(otherFamily.spec.kubernetes.lockedPackages).toBeUndefined();
    expect(otherFamily.notes[0]).toContain('for redhat, but base.osFamily is debian');
  });

  it('refuses to build a series that no lock resolves, saying how to resolve it', () => {
    const series = k8sSpec('  series: "1.37"\n');
    expect(applyLock(series, lockFor(URL_A, SHA_A)).notes).toEqual(['kubernetes.series "1.37" is not resolved: image.lock records no Kubernetes release; run `kib lock --update`']);
    let error: unknown;
    try {
      requireKubernetesVersion(series);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).issues[0]?.path).toBe('kubernetes.series');
    expect((error as ConfigError).message).toContain('kib lock --update');
  });
});

describe('applyLock', () => {
  it('pins the sha256 for the same base URL and updates configSha256', () => {
    const unpinned = spec();
    const { spec: locked, notes } = applyLock(unpinned, lockFor(URL_A, SHA_A));
    expect(notes).toEqual([]);
    expect(locked.base.sha256).toBe(SHA_A);
    expect(locked.configSha256).not.toBe(unpinned.configSha256);
    expect(locked.configSha256).toBe(spec(`  sha256: ${SHA_A}\n`).configSha256);
  });

  it('does not apply to another base URL, and says how to fix that', () => {
    const unpinned = spec();
    const { spec: same, notes } = applyLock(unpinned, lockFor('https://example.org/images/base-9.7.qcow2', SHA_A), '/p/image.lock');
    expect(same).toBe(unpinned);
    expect(notes).toHaveLength(1);
    expect(notes[0]).toContain('image.lock is for another base');
    expect(notes[0]).toContain('run `kib lock --update`');
  });

  it('agrees with a matching pin in the file', () => {
    const pinned = spec(`  sha256: ${SHA_A}\n`);
    expect(applyLock(pinned, lockFor(URL_A, SHA_A))).toEqual({ spec: pinned, notes: [] });
  });

  it('keeps a pin in the file that disagrees with the lock, and says the lock is stale', () => {
    const pinned = spec(`  sha256: ${SHA_B}\n`);
    const { spec: kept, notes } = applyLock(pinned, lockFor(URL_A, SHA_A));
    expect(kept).toBe(pinned);
    expect(notes).toHaveLength(1);
    expect(notes[0]).toContain(`pinned to ${SHA_B} but image.lock records ${SHA_A}`);
    expect(notes[0]).toContain('`kib lock --update`');
  });

  it('is a no-op without a lock', () => {
    const unpinned = spec();
    expect(applyLock(unpinned, undefined)).toEqual({ spec: unpinned, notes: [] });
  });
});

describe('updateLock', () => {
  it('records the spec URL with the resolved sha256 and size', () => {
    expect(updateLock(spec(), { sha256: SHA_B, sizeBytes: 42 })).toEqual({ lockVersion: 1, base: { url: URL_A, sha256: SHA_B, sizeBytes: 42 } });
    expect(updateLock(spec(), { sha256: SHA_B, sizeBytes: 42 }, K8S_137).kubernetes).toEqual(K8S_137);
  });
});

describe('the repository lock', () => {
  it('is for the base of the repository image.yaml and agrees with its pin', async () => {
    const repoSpec = await loadBuildSpec({ configPath: 'image.yaml', cwd: REPO_ROOT });
    const lock = parseLock(await readFile(join(REPO_ROOT, 'image.lock'), 'utf8'));
    const { spec: locked, notes } = applyLock(repoSpec, lock);
    expect(notes).toEqual([]);
    expect(locked.base.sha256).toBe(repoSpec.base.sha256);
  });
});
