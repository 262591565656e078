import { readdir, readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseBuildManifest } from '../../../src/core/build-facts.js';
import { isCancelled } from '../../../src/core/errors.js';
import type { Artifact } from '../../../src/core/types.js';
import {
  artifactStem,
  createStaging,
  discardStaging,
  exportArtifacts,
  finalizeOutput,
  type CycloneDxBom,
  type ExportRequest,
} from '../../../src/export/index.js';
import { run } from '../../../src/process/index.js';
import type { KibEvent } from '../../../src/report/events.js';
import { makeOverlayDisk, makeTempDir, sampleInventory, sampleMeta } from './support.js';

const stem = artifactStem({ name: sampleMeta.facts.image.name, kubernetesVersion: sampleMeta.facts.kubernetes.version, imageVersion: sampleMeta.facts.image.version });

describe('exportArtifacts', () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let disk: Awaited<ReturnType<typeof makeOverlayDisk>>;
  let request: (stagingDir: string) => ExportRequest;

  beforeAll(async () => {
    tmp = await makeTempDir('export');
    disk = await makeOverlayDisk(tmp.dir);
    request = (stagingDir) => ({
      disk: { path: disk.overlay, format: 'qcow2', virtualSizeBytes: disk.virtualSizeBytes },
      stagingDir,
      stem,
      formats: ['qcow2', 'raw', 'containerdisk'],
      compress: true,
      inventory: sampleInventory,
      meta: sampleMeta,
      now: () => new Date('2026-09-01T10:09:00Z'),
    });
  });
  afterAll(async () => tmp.remove());

  it('writes every artifact to staging, described by manifest.json and checked by SHA256SUMS', async () => {
    const out = join(tmp.dir, 'out-full');
    const staging = await createStaging(out, 'full');
    const artifacts = await exportArtifacts(request(staging));

    const files = [`${stem}.containerdisk.tar`, `${stem}.qcow2`, `${stem}.raw`, 'SHA256SUMS', 'manifest.json', 'sbom.cdx.json'].sort();
    expect((await readdir(staging)).sort()).toEqual(files);
    expect(artifacts.map((a) => a.kind)).toEqual(['qcow2', 'raw', 'containerdisk', 'sbom', 'manifest', 'sha256sums']);

    const check = await run('sha256sum', ['--strict', '-c', 'SHA256SUMS'], { cwd: staging });
    expect(check.stdout.trim().split('\n')).toEqual(files.filter((f) => f !== 'SHA256SUMS').sort().map((f) => `${f}: OK`));

    // Read back through the schema every reader uses (verify, kubevirt manifests).
    const manifest = parseBuildManifest(await readFile(join(staging, 'manifest.json'), 'utf8'));
    const byFile = (a: Artifact): string => a.path.slice(staging.length + 1);
    expect(manifest.artifacts.map((a) => [a.file, a.kind, a.sha256, a.sizeBytes])).toEqual(
      artifacts.filter((a) => a.kind !== 'manifest' && a.kind !== 'sha256sums').map((a) => [byFile(a), a.kind, a.sha256, a.sizeBytes]).sort(),
    );
    expect(manifest.artifacts.find((a) => a.kind === 'qcow2')).toMatchObject({ format: 'qcow2', virtualSizeBytes: disk.virtualSizeBytes });
    expect(manifest.build.finishedAt).toBe('2026-09-01T10:09:00.000Z');
    expect(manifest.build.phases.export).toBeGreaterThan(0);

    // The qcow2 is standalone and the raw and containerDisk carry the same disk.
    const qcow2 = join(staging, `${stem}.qcow2`);
    const info = JSON.parse((await run('qemu-img', ['info', '--output', 'json', qcow2])).stdout) as Record<string, unknown>;
    expect(info['backing-filename']).toBeUndefined();
    expect((await run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', qcow2, join(staging, `${stem}.raw`)], { allowFailure: true })).exitCode).toBe(0);
    const qcow2Sha = artifacts[0]?.sha256;
    const inspect = JSON.parse(
      (await run('skopeo', ['--insecure-policy', 'inspect', `oci-archive:${join(staging, `${stem}.containerdisk.tar`)}`], { env: { TMPDIR: tmp.dir } })).stdout,
    ) as { Labels: Record<string, string> };
    expect(inspect.Labels).toMatchObject({
      'io.kube-image-builder.disk-sha256': qcow2Sha,
      'io.kube-image-builder.kubernetes-version': '1.36.1',
      'org.opencontainers.image.version': sampleMeta.facts.image.version,
      'org.opencontainers.image.created': '2026-09-01T10:00:00Z',
    });

    const sbom = JSON.parse(await readFile(join(staging, 'sbom.cdx.json'), 'utf8')) as CycloneDxBom;
    expect(sbom.metadata.component.hashes).toEqual([{ alg: 'SHA-256', content: qcow2Sha }]);

    const final = await finalizeOutput(staging, out, stem);
    expect(await readdir(out)).toEqual([stem]);
    expect((await run('sha256sum', ['-c', 'SHA256SUMS'], { cwd: final, allowFailure: true })).exitCode).toBe(0);
  });

  it('gives the same disks, containerDisk and SBOM when run again on the same disk', async () => {
    const out = join(tmp.dir, 'out-repeat');
    const first = await exportArtifacts({ ...request(await createStaging(out, 'one')), formats: ['containerdisk'] });
    const second = await exportArtifacts({ ...request(await createStaging(out, 'two')), formats: ['containerdisk'] });
    const digests = (artifacts: Artifact[]): string[] => artifacts.filter((a) => a.kind !== 'manifest' && a.kind !== 'sha256sums').map((a) => `${a.kind}:${a.sha256}`);
    expect(digests(second)).toEqual(digests(first));
    expect(first.map((a) => a.kind)).toEqual(['qcow2', 'containerdisk', 'sbom', 'manifest', 'sha256sums']);
  });

  it('a failed export, discarded by the caller, leaves the output directory as it was', async () => {
    const out = join(tmp.dir, 'out-failed');
    await mkdir(join(out, stem), { recursive: true });
    await writeFile(join(out, stem, 'previous.qcow2'), 'previous build');
    const before = await readdir(out, { recursive: true });

    // A disk whose backing file is gone: qemu-img fails on the first step.
    const broken = join(tmp.dir, 'broken.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', join(tmp.dir, 'gone.qcow2'), '-F', 'qcow2', '-u', broken, '64M']);
    const staging = await createStaging(out, 'fail');
    const error = await exportArtifacts({ ...request(staging), disk: { path: broken, format: 'qcow2', virtualSizeBytes: disk.virtualSizeBytes } }).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(Error);
    await discardStaging(staging);
    expect(await readdir(out, { recursive: true })).toEqual(before);
    expect(await readFile(join(out, stem, 'previous.qcow2'), 'utf8')).toBe('previous build');
  });

  it('a cancel after the qcow2 was written, discarded by the caller, leaves the output directory as it was', async () => {
    const out = join(tmp.dir, 'out-cancel');
    await mkdir(out, { recursive: true });
    await writeFile(join(out, 'keep.txt'), 'x');
    const controller = new AbortController();
    const events: KibEvent[] = [];
    const staging = await createStaging(out, 'cancel');
    const error = await exportArtifacts({
      ...request(staging),
      signal: controller.signal,
      reporter: {
        emit: (event) => {
          events.push(event);
          if (event.type === 'step' && event.message.endsWith('.raw')) controller.abort();
        },
      },
    }).catch((caught: unknown) => caught);
    expect(isCancelled(error)).toBe(true);
    expect(await readdir(staging)).toContain(`${stem}.qcow2`);
    await discardStaging(staging);
    expect(await readdir(out)).toEqual(['keep.txt']);
    expect(events.some((event) => event.type === 'progress' && event.label === 'qcow2')).toBe(true);
  });

  it('rejects a stem that is not a plain file name before doing anything', async () => {
    const staging = await createStaging(join(tmp.dir, 'out-stem'), 'stem');
    await expect(exportArtifacts({ ...request(staging), stem: '../x' })).rejects.toThrow(/artifact stem/);
    expect(await readdir(staging)).toEqual([]);
  });
});
