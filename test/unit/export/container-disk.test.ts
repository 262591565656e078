import { createHash } from 'node:crypto';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCancelled } from '../../../src/core/errors.js';
import { writeContainerDisk, type ContainerDiskResult } from '../../../src/export/index.js';
import { run } from '../../../src/process/index.js';
import { makeOverlayDisk, makeTempDir } from './support.js';

const labels = {
  'org.opencontainers.image.version': 'v0.3.0',
  'io.kube-image-builder.kubernetes-version': '1.36.1',
  'io.kube-image-builder.disk-sha256': 'f'.repeat(64),
};
const created = new Date('2026-09-01T10:00:00Z');

describe('writeContainerDisk', () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let disk: string;
  let result: ContainerDiskResult;

  beforeAll(async () => {
    tmp = await makeTempDir('cd');
    const { overlay } = await makeOverlayDisk(tmp.dir);
    disk = join(tmp.dir, 'rocky-9-kube-v1.36.1-v0.3.0.qcow2');
    await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'qcow2', '-c', overlay, disk]);
    result = await writeContainerDisk({ diskPath: disk, outPath: join(tmp.dir, 'a.containerdisk.tar'), labels, created, tag: 'kube-v1.36.1-v0.3.0' });
  });
  afterAll(async () => tmp.remove());

  it('writes an archive skopeo reads: one gzip layer, the labels, linux/amd64, the digests we returned', async () => {
    const inspect = await run('skopeo', ['--insecure-policy', 'inspect', `oci-archive:${result.path}`], { env: { TMPDIR: tmp.dir } });
    const info = JSON.parse(inspect.stdout) as { Layers: string[]; Labels: Record<string, string>; Os: string; Architecture: string; Digest: string };
    expect(info.Layers).toEqual([result.layerDigest]);
    expect(info.Labels).toEqual(labels);
    expect(info.Os).toBe('linux');
    expect(info.Architecture).toBe('amd64');
    expect(info.Digest).toBe(result.manifestDigest);

    const raw = await run('skopeo', ['--insecure-policy', 'inspect', '--raw', `oci-archive:${result.path}:kube-v1.36.1-v0.3.0`], { env: { TMPDIR: tmp.dir } });
    const manifest = JSON.parse(raw.stdout) as { mediaType: string; layers: { mediaType: string }[] };
    expect(manifest.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(manifest.layers.map((layer) => layer.mediaType)).toEqual(['application/vnd.oci.image.layer.v1.tar+gzip']);
    expect(`sha256:${createHash('sha256').update(raw.stdout).digest('hex')}`).toBe(result.manifestDigest);
  });

  it('survives skopeo copy; the layer holds only disk/ (0555) and the byte-identical disk (0444), owned 107:107', async () => {
    const copied = join(tmp.dir, 'copied');
    await run('skopeo', ['--insecure-policy', 'copy', `oci-archive:${result.path}`, `dir:${copied}`], { env: { TMPDIR: tmp.dir } });
    const layerFile = join(copied, result.layerDigest.slice('sha256:'.length));

    const listing = await run('tar', ['--numeric-owner', '-tvzf', layerFile], { env: { TZ: 'UTC' } });
    const rows = listing.stdout.trim().split('\n').map((line) => line.split(/\s+/));
    expect(rows.map((row) => [row[0], row[1], row[5]])).toEqual([
      ['dr-xr-xr-x', '107/107', 'disk/'],
      ['-r--r--r--', '107/107', 'disk/rocky-9-kube-v1.36.1-v0.3.0.qcow2'],
    ]);
    // Fixed mtime: the creation time we passed.
    expect(rows[1]?.[3]).toBe('2026-09-01');

    const extracted = join(tmp.dir, 'extracted');
    await run('mkdir', ['-p', extracted]);
    await run('tar', ['-xzf', layerFile, '-C', extracted]);
    const original = await readFile(disk);
    const unpacked = await readFile(join(extracted, 'disk', 'rocky-9-kube-v1.36.1-v0.3.0.qcow2'));
    expect(unpacked.equals(original)).toBe(true);

    const config = JSON.parse(await readFile(join(copied, result.configDigest.slice('sha256:'.length)), 'utf8')) as {
      rootfs: { diff_ids: string[] };
      config: { Entrypoint: string[] };
      created: string;
    };
    const uncompressed = await run('sh', ['-c', 'gzip -dc "$1" | sha256sum', 'sh', layerFile]);
    expect(config.rootfs.diff_ids).toEqual([`sha256:${uncompressed.stdout.split(' ')[0]}`]);
    expect(result.diffId).toBe(config.rootfs.diff_ids[0]);
    expect(config.created).toBe('2026-09-01T10:00:00Z');
    expect(config.config.Entrypoint).toEqual(['no-entrypoint']);
  });

  it('is an OCI layout: oci-layout, index.json with the tag, and exactly the three blobs', async () => {
    const listing = await run('tar', ['-tvf', result.path]);
    const names = listing.stdout.trim().split('\n').map((line) => line.split(/\s+/).pop());
    const hex = (digest: string): string => `blobs/sha256/${digest.slice(7)}`;
    expect(names).toEqual(['oci-layout', 'index.json', 'blobs/', 'blobs/sha256/', hex(result.configDigest), hex(result.manifestDigest), hex(result.layerDigest)]);
    const index = JSON.parse((await run('tar', ['-xOf', result.path, 'index.json'])).stdout) as {
      manifests: { digest: string; annotations: Record<string, string> }[];
    };
    expect(index.manifests).toHaveLength(1);
    expect(index.manifests[0]?.digest).toBe(result.manifestDigest);
    expect(index.manifests[0]?.annotations).toEqual({ 'org.opencontainers.image.ref.name': 'kube-v1.36.1-v0.3.0' });
    expect(result.sizeBytes).toBe((await stat(result.path)).size);
    expect(result.sha256).toBe(createHash('sha256').update(await readFile(result.path)).digest('hex'));
  });

  it('is reproducible: the same disk and labels (in any order) give the same bytes; other labels do not', async () => {
    const reordered = Object.fromEntries(Object.entries(labels).reverse());
    const again = await writeContainerDisk({ diskPath: disk, outPath: join(tmp.dir, 'b.containerdisk.tar'), labels: reordered, created, tag: 'kube-v1.36.1-v0.3.0' });
    expect(again.manifestDigest).toBe(result.manifestDigest);
    expect(again.layerDigest).toBe(result.layerDigest);
    expect(again.sha256).toBe(result.sha256);

    const other = await writeContainerDisk({ diskPath: disk, outPath: join(tmp.dir, 'c.containerdisk.tar'), labels: { ...labels, extra: 'x' }, created, tag: 'kube-v1.36.1-v0.3.0' });
    expect(other.layerDigest).toBe(result.layerDigest);
    expect(other.manifestDigest).not.toBe(result.manifestDigest);
  });

  it('without a creation time uses epoch 0 and omits created', async () => {
    const epoch = await writeContainerDisk({ diskPath: disk, outPath: join(tmp.dir, 'd.containerdisk.tar'), labels });
    const listing = await run('tar', ['-tvf', epoch.path, 'oci-layout'], { env: { TZ: 'UTC' } });
    expect(listing.stdout).toContain('1970-01-01');
    const config = JSON.parse((await run('tar', ['-xOf', epoch.path, `blobs/sha256/${epoch.configDigest.slice(7)}`])).stdout) as Record<string, unknown>;
    expect(config).not.toHaveProperty('created');
    const index = (await run('tar', ['-xOf', epoch.path, 'index.json'])).stdout;
    expect(index).toContain('"org.opencontainers.image.ref.name":"latest"');
  });

  it('when cancelled, leaves neither the archive nor temporary files behind', async () => {
    const dir = join(tmp.dir, 'cancel');
    await run('mkdir', ['-p', dir]);
    const big = join(dir, 'big.raw');
    // 256 MiB of non-zero bytes so the write takes long enough to be cancelled mid-way.
    await writeFile(big, Buffer.alloc(256 * 1024 * 1024, 0x5a));
    const controller = new AbortController();
    const pending = writeContainerDisk({ diskPath: big, outPath: join(dir, 'x.tar'), labels, signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    const error = await pending.then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(isCancelled(error)).toBe(true);
    expect((await readdir(dir)).sort()).toEqual(['big.raw']);
  });

  it('rejects a tag that is not a valid OCI tag before reading the disk', async () => {
    await expect(writeContainerDisk({ diskPath: disk, outPath: join(tmp.dir, 'e.tar'), labels, tag: 'has space' })).rejects.toThrow(/not a valid OCI tag/);
  });
});
