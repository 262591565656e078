import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { artifactStem, containerDiskTag, createStaging, discardStaging, finalizeOutput } from '../../../src/export/index.js';
import { makeTempDir } from './support.js';

describe('artifactStem', () => {
  it('joins name, Kubernetes version and image version, replacing unsafe characters', () => {
    expect(artifactStem({ name: 'rocky-9', kubernetesVersion: '1.36.1', imageVersion: 'v0.3.0' })).toBe('rocky-9-kube-v1.36.1-v0.3.0');
    expect(artifactStem({ name: 'rocky-9', kubernetesVersion: '1.36.1', imageVersion: '0.0.0-dev+abc123/x y' })).toBe('rocky-9-kube-v1.36.1-0.0.0-dev-abc123-x-y');
  });

  it('gives a containerDisk tag that is a valid OCI tag', () => {
    expect(containerDiskTag({ kubernetesVersion: '1.36.1', imageVersion: '0.0.0-dev+abc' })).toBe('kube-v1.36.1-0.0.0-dev-abc');
    expect(containerDiskTag({ kubernetesVersion: '1.36.1', imageVersion: 'x'.repeat(200) })).toHaveLength(128);
  });
});

describe('staging and finalizeOutput', () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  beforeEach(async () => {
    tmp = await makeTempDir('output');
  });
  afterEach(async () => tmp.remove());

  it('creates the output dir and a hidden staging dir inside it, then renames staging into place', async () => {
    const out = join(tmp.dir, 'output');
    const staging = await createStaging(out, 'build-1');
    expect(staging).toBe(join(out, '.staging-build-1'));
    await writeFile(join(staging, 'a.qcow2'), 'new');
    const final = await finalizeOutput(staging, out, 'rocky-9-kube-v1.36.1-v1');
    expect(final).toBe(join(out, 'rocky-9-kube-v1.36.1-v1'));
    expect(await readdir(out)).toEqual(['rocky-9-kube-v1.36.1-v1']);
    expect(await readFile(join(final, 'a.qcow2'), 'utf8')).toBe('new');
  });

  it('replaces an existing directory of that name whole, leaving nothing aside', async () => {
    const out = join(tmp.dir, 'output');
    const target = join(out, 'stem');
    await mkdir(target, { recursive: true });
    await writeFile(join(target, 'old.qcow2'), 'old');
    await writeFile(join(out, 'unrelated.txt'), 'keep');
    const staging = await createStaging(out, 'b2');
    await writeFile(join(staging, 'new.qcow2'), 'new');
    await finalizeOutput(staging, out, 'stem');
    expect((await readdir(out)).sort()).toEqual(['stem', 'unrelated.txt']);
    expect(await readdir(target)).toEqual(['new.qcow2']);
  });

  it('refuses a staging dir elsewhere (the move would not be one rename) and names that escape', async () => {
    const out = join(tmp.dir, 'output');
    const elsewhere = join(tmp.dir, 'other', '.staging-x');
    await mkdir(elsewhere, { recursive: true });
    await expect(finalizeOutput(elsewhere, out, 'stem')).rejects.toThrow(/not directly inside/);
    const staging = await createStaging(out, 'y');
    await expect(finalizeOutput(staging, out, '../escape')).rejects.toThrow(/must match/);
    await expect(finalizeOutput(staging, out, '.hidden')).rejects.toThrow(/must match/);
  });

  it('refuses to reuse a staging id, and discardStaging removes only staging dirs', async () => {
    const out = join(tmp.dir, 'output');
    const staging = await createStaging(out, 'same');
    await expect(createStaging(out, 'same')).rejects.toThrow(/EEXIST/);
    await writeFile(join(staging, 'partial.qcow2'), 'x');
    await discardStaging(staging);
    expect(await readdir(out)).toEqual([]);
    await discardStaging(staging);
    await expect(discardStaging(out)).rejects.toThrow(/not a staging directory/);
  });
});
