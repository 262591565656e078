import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CancelledError } from '../../../src/core/errors.js';
import { run } from '../../../src/process/index.js';
import { DigestMismatchError, OciArchiveError, RegistryUnreachableError } from '../../../src/push/errors.js';
import { pushContainerDisk } from '../../../src/push/push-container-disk.js';
import type { KibEvent } from '../../../src/report/events.js';
import { createOciArchive, type OciArchiveFixture } from '../../support/oci-fixture.js';
import { freePort, registryGet, startRegistry, type StartedRegistry } from './registry-fixture.js';

const MIB = 1024 * 1024;
const ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

let work: string;
let registry: StartedRegistry;
let archive: OciArchiveFixture;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'kib-push-'));
  registry = await startRegistry(join(work, 'registry'));
  // 3 MiB of random disk: the layer does not compress, so a 1 MiB chunk size forces chunked upload.
  archive = await createOciArchive(join(work, 'containerdisk.tar'), { diskBytes: 3 * MIB, refName: 'v1.36.1' });
}, 60_000);

afterAll(async () => {
  await registry.stop();
  await rm(work, { recursive: true, force: true });
});

function recorder(): { events: KibEvent[]; emit(event: KibEvent): void; lines(): string[] } {
  const events: KibEvent[] = [];
  return { events, emit: (event) => events.push(event), lines: () => events.flatMap((e) => (e.type === 'log' ? [e.line] : [])) };
}

function digestOf(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** Pulls a manifest and all its blobs back over the API and checks every digest. */
async function expectPulledBack(repo: string, tag: string, expectedManifest: Buffer, blobs: readonly Buffer[]): Promise<void> {
  const manifest = await registryGet(`${registry.url}/v2/${repo}/manifests/${tag}`, { Accept: ACCEPT });
  expect(manifest.status).toBe(200);
  expect(manifest.body.equals(expectedManifest)).toBe(true);
  expect(manifest.headers['docker-content-digest']).toBe(digestOf(expectedManifest));
  for (const blob of blobs) {
    const pulled = await registryGet(`${registry.url}/v2/${repo}/blobs/${digestOf(blob)}`);
    expect(pulled.status).toBe(200);
    expect(digestOf(pulled.body)).toBe(digestOf(blob));
  }
}

describe('pushContainerDisk against a real registry', () => {
  it('uploads config and layer (the layer in chunks), then the manifest, and pulls back identical', async () => {
    const reporter = recorder();
    const [image] = archive.images;
    if (image === undefined) throw new Error('fixture has no image');
    const result = await pushContainerDisk({
      archivePath: archive.path,
      reference: `${registry.host}/kib/rocky-9:v1.36.1`,
      chunkSizeBytes: MIB,
      reporter,
    });
    expect(result.digest).toBe(archive.rootDigest);
    expect(result.reference).toBe(`${registry.host}/kib/rocky-9:v1.36.1@${archive.rootDigest}`);
    expect(result.uploadedBlobs).toBe(2);
    expect(result.skippedBlobs).toBe(0);
    expect(result.uploadedBytes).toBe(image.config.length + (image.layers[0]?.length ?? 0));
    const layerDigest = digestOf(image.layers[0] ?? Buffer.alloc(0));
    expect(reporter.lines()).toContain(`blob ${layerDigest} (${image.layers[0]?.length ?? 0} bytes) uploaded (chunked)`);
    expect(reporter.lines()).toContain(`blob ${digestOf(image.config)} (${image.config.length} bytes) uploaded (monolithic)`);
    const progress = reporter.events.filter((e) => e.type === 'progress');
    expect(progress.at(-1)).toMatchObject({ done: result.uploadedBytes, total: result.uploadedBytes, unit: 'bytes' });
    expect(reporter.events.at(-1)).toMatchObject({ type: 'phase-end', phase: 'push', ok: true });
    await expectPulledBack('kib/rocky-9', 'v1.36.1', image.manifest, [image.config, ...image.layers]);
  });

  it('skips every blob the second time', async () => {
    const result = await pushContainerDisk({ archivePath: archive.path, reference: `${registry.host}/kib/rocky-9:v1.36.1` });
    expect(result).toMatchObject({ digest: archive.rootDigest, uploadedBlobs: 0, skippedBlobs: 2, uploadedBytes: 0 });
  });

  it('is visible to skopeo inspect', async () => {
    const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', `docker://${registry.host}/kib/rocky-9:v1.36.1`], { timeoutMs: 60_000 });
    const inspected = JSON.parse(stdout) as { Digest: string; Architecture: string; Os: string; Layers: string[] };
    expect(inspected.Digest).toBe(archive.rootDigest);
    expect(inspected.Architecture).toBe('amd64');
    expect(inspected.Os).toBe('linux');
    expect(inspected.Layers).toHaveLength(1);
  });

  it('pushes Docker schema 2 media types in one PUT per blob and keeps the media type', async () => {
    const docker = await createOciArchive(join(work, 'docker.tar'), { flavor: 'docker', diskBytes: 512 * 1024 });
    const reporter = recorder();
    const result = await pushContainerDisk({ archivePath: docker.path, reference: `${registry.host}/kib/docker-flavor:v1`, reporter });
    expect(result.uploadedBlobs).toBe(2);
    expect(reporter.lines().filter((line) => line.endsWith('(monolithic)'))).toHaveLength(2);
    const manifest = await registryGet(`${registry.url}/v2/kib/docker-flavor/manifests/v1`, { Accept: ACCEPT });
    expect(manifest.headers['content-type']).toBe('application/vnd.docker.distribution.manifest.v2+json');
    expect(digestOf(manifest.body)).toBe(docker.rootDigest);
  });

  it('pushes a multi-arch index: both images by digest, the index under the tag', async () => {
    const multi = await createOciArchive(join(work, 'multi.tar'), { multiArch: true, diskBytes: 128 * 1024 });
    const result = await pushContainerDisk({ archivePath: multi.path, reference: `${registry.host}/kib/multi:v2` });
    expect(result.digest).toBe(multi.rootDigest);
    expect(result.uploadedBlobs).toBe(4);
    const index = await registryGet(`${registry.url}/v2/kib/multi/manifests/v2`, { Accept: ACCEPT });
    expect(index.headers['content-type']).toBe('application/vnd.oci.image.index.v1+json');
    for (const image of multi.images) {
      const child = await registryGet(`${registry.url}/v2/kib/multi/manifests/${image.manifestDigest}`, { Accept: ACCEPT });
      expect(child.status).toBe(200);
      expect(child.body.equals(image.manifest)).toBe(true);
    }
  });

  it('pushes an archive written by skopeo (a real-world producer) with the digest skopeo reports', async () => {
    const copied = join(work, 'skopeo-copy.tar');
    await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${registry.host}/kib/rocky-9:v1.36.1`, `oci-archive:${copied}:v9`], { timeoutMs: 120_000 });
    const { stdout } = await run('skopeo', ['inspect', `oci-archive:${copied}`], { timeoutMs: 60_000 });
    const expected = (JSON.parse(stdout) as { Digest: string }).Digest;
    const result = await pushContainerDisk({ archivePath: copied, reference: `${registry.host}/kib/from-skopeo:v9` });
    expect(result.digest).toBe(expected);
    const manifest = await registryGet(`${registry.url}/v2/kib/from-skopeo/manifests/v9`, { Accept: ACCEPT });
    expect(digestOf(manifest.body)).toBe(expected);
  });

  it('accepts a reference pinned to the archive digest and refuses another digest before uploading', async () => {
    const pinned = await pushContainerDisk({ archivePath: archive.path, reference: `${registry.host}/kib/pinned@${archive.rootDigest}` });
    expect(pinned.digest).toBe(archive.rootDigest);
    const manifest = await registryGet(`${registry.url}/v2/kib/pinned/manifests/${archive.rootDigest}`, { Accept: ACCEPT });
    expect(manifest.status).toBe(200);

    const wrong = `sha256:${'0'.repeat(64)}`;
    const error = await pushContainerDisk({ archivePath: archive.path, reference: `${registry.host}/kib/wrong@${wrong}` }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DigestMismatchError);
    const tags = await registryGet(`${registry.url}/v2/kib/wrong/tags/list`);
    expect(tags.status).toBe(404);
  });

  it('stops with CancelledError when the signal fires mid-upload', async () => {
    const big = await createOciArchive(join(work, 'big.tar'), { diskBytes: 8 * MIB });
    const controller = new AbortController();
    const reporter = {
      emit(event: KibEvent): void {
        if (event.type === 'progress' && event.done > 0) controller.abort();
      },
    };
    const error = await pushContainerDisk({
      archivePath: big.path,
      reference: `${registry.host}/kib/cancelled:v1`,
      chunkSizeBytes: MIB,
      signal: controller.signal,
      reporter,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CancelledError);
    const manifest = await registryGet(`${registry.url}/v2/kib/cancelled/manifests/v1`, { Accept: ACCEPT });
    expect(manifest.status).toBe(404);
  });

  it('names the registry when nothing listens there', async () => {
    const port = await freePort();
    const error = await pushContainerDisk({ archivePath: archive.path, reference: `127.0.0.1:${port}/kib/x:v1` }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RegistryUnreachableError);
    expect((error as RegistryUnreachableError).code).toBe('REGISTRY_UNREACHABLE');
    expect((error as Error).message).toContain(`127.0.0.1:${port}`);
    expect((error as RegistryUnreachableError).hint).toMatch(/Nothing listens/);
  });

  it('rejects an archive that is not an OCI layout before contacting the registry', async () => {
    const bogus = join(work, 'bogus.tar');
    await writeFile(bogus, Buffer.alloc(4096, 7));
    const error = await pushContainerDisk({ archivePath: bogus, reference: `${registry.host}/kib/bogus:v1` }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OciArchiveError);
    expect((error as OciArchiveError).code).toBe('OCI_ARCHIVE_INVALID');
    expect((error as Error).message).toContain(bogus);
  });
});
