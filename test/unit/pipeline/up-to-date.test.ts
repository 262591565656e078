import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BUILD_KEY_FILE, checkUpToDate, writeBuildKeyRecord } from '../../../src/pipeline/up-to-date.js';
import { offlineDebianManifest } from '../../support/manifests.js';

const KEY = 'e'.repeat(64);

describe('checkUpToDate', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kib-uptodate-'));
    await writeFile(join(dir, 'disk.qcow2'), 'qcow2 bytes');
    const manifest = { ...offlineDebianManifest, artifacts: [{ file: 'disk.qcow2', kind: 'qcow2' as const, sizeBytes: 11, sha256: 'f'.repeat(64), format: 'qcow2' as const }] };
    await writeFile(join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    await writeFile(join(dir, 'SHA256SUMS'), `${'f'.repeat(64)}  disk.qcow2\n`);
    await writeBuildKeyRecord(dir, { exportKey: KEY, keys: { export: KEY } });
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('finds the artifacts of the same export key, with the manifest and SHA256SUMS', async () => {
    const result = await checkUpToDate(dir, KEY);
    expect(result.status).toBe('up-to-date');
    if (result.status !== 'up-to-date') return;
    expect(result.artifacts.map((a) => a.kind)).toEqual(['qcow2', 'manifest', 'sha256sums']);
    expect(result.artifacts[0]).toEqual({ path: join(dir, 'disk.qcow2'), kind: 'qcow2', sha256: 'f'.repeat(64), sizeBytes: 11 });
  });

  it('is stale for another export key, a missing record, a missing or truncated artifact, or a missing SHA256SUMS', async () => {
    expect(await checkUpToDate(dir, 'd'.repeat(64))).toMatchObject({ status: 'stale', reason: expect.stringContaining('not dddddddddddd') });
    await truncate(join(dir, 'disk.qcow2'), 5);
    expect(await checkUpToDate(dir, KEY)).toMatchObject({ status: 'stale', reason: expect.stringContaining('has 5 bytes') });
    await writeFile(join(dir, 'disk.qcow2'), 'qcow2 bytes');
    await rm(join(dir, 'SHA256SUMS'));
    expect(await checkUpToDate(dir, KEY)).toMatchObject({ status: 'stale', reason: expect.stringContaining('SHA256SUMS is missing') });
    await rm(join(dir, BUILD_KEY_FILE));
    expect(await checkUpToDate(dir, KEY)).toMatchObject({ status: 'stale', reason: expect.stringContaining(`no ${BUILD_KEY_FILE}`) });
    expect(await checkUpToDate(join(dir, 'absent'), KEY)).toMatchObject({ status: 'stale' });
  });
});
