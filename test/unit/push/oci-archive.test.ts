import { createReadStream } from 'node:fs';
import { link, mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../../src/process/index.js';
import { DigestMismatchError, OciArchiveError } from '../../../src/push/errors.js';
import { openOciArchive, selectRoot } from '../../../src/push/oci-archive.js';
import { indexTar, TarFormatError } from '../../../src/push/tar-index.js';
import { createOciArchive, createTar } from '../../support/oci-fixture.js';

let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'kib-oci-'));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function readMember(tarPath: string, offset: number, size: number): Promise<Buffer> {
  if (size === 0) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  for await (const chunk of createReadStream(tarPath, { start: offset, end: offset + size - 1 })) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe('indexTar', () => {
  const longName = `${'deep-directory-name/'.repeat(8)}${'x'.repeat(120)}.bin`;

  it.each(['gnu', 'pax', 'ustar'])('finds every member of a GNU tar --format=%s archive at the right offset', async (format) => {
    const src = join(work, `src-${format}`);
    await mkdir(join(src, 'blobs', 'sha256'), { recursive: true });
    const files: Record<string, Buffer> = {
      'oci-layout': Buffer.from('{"imageLayoutVersion":"1.0.0"}'),
      'blobs/sha256/empty': Buffer.alloc(0),
      'blobs/sha256/odd': Buffer.alloc(1234, 0x41),
      'blobs/sha256/block': Buffer.alloc(1024, 0x42),
    };
    // ustar cannot hold a 180-character name without a usable prefix split; the other formats can.
    if (format !== 'ustar') files[longName] = Buffer.from('long name content');
    for (const [name, data] of Object.entries(files)) {
      await mkdir(join(src, name, '..'), { recursive: true });
      await writeFile(join(src, name), data);
    }
    await link(join(src, 'blobs/sha256/odd'), join(src, 'blobs/sha256/odd-link'));
    const tarPath = join(work, `${format}.tar`);
    await run('tar', ['--format', format, '-cf', tarPath, '-C', src, '.']);

    const entries = await indexTar(tarPath);
    for (const [name, data] of Object.entries(files)) {
      const entry = entries.get(name);
      expect(entry, name).toBeDefined();
      if (entry === undefined) continue;
      expect(entry.type).toBe('file');
      expect(entry.sizeBytes).toBe(data.length);
      expect((await readMember(tarPath, entry.offset, entry.sizeBytes)).equals(data)).toBe(true);
    }
    expect(entries.get('blobs/sha256')?.type).toBe('directory');
    // GNU tar stores the second name of a hard-linked file as a link to the first.
    const linkEntries = [entries.get('blobs/sha256/odd'), entries.get('blobs/sha256/odd-link')];
    expect(linkEntries.map((e) => e?.type).sort()).toEqual(['file', 'hardlink']);
  });

  it('rejects a file that is not a tar, and a truncated one', async () => {
    const notTar = join(work, 'not.tar');
    await writeFile(notTar, Buffer.alloc(2048, 0x61));
    await expect(indexTar(notTar)).rejects.toThrow(TarFormatError);

    const whole = createTar([{ name: 'index.json', data: Buffer.alloc(5000, 0x20) }]);
    const cut = join(work, 'cut.tar');
    await writeFile(cut, whole);
    await truncate(cut, 3000);
    await expect(indexTar(cut)).rejects.toThrow(/truncated/);
  });
});

describe('openOciArchive', () => {
  it('loads the manifest tree of a fixture archive and streams blob ranges', async () => {
    const fixture = await createOciArchive(join(work, 'fixture.tar'), { diskBytes: 10_000 });
    const archive = await openOciArchive(fixture.path);
    const node = await archive.loadManifest(selectRoot(archive, undefined));
    expect(node.kind).toBe('image');
    if (node.kind !== 'image') return;
    const [image] = fixture.images;
    expect(node.bytes.equals(image?.manifest ?? Buffer.alloc(0))).toBe(true);
    expect(node.layers).toHaveLength(1);
    const layer = image?.layers[0] ?? Buffer.alloc(0);
    const chunks: Buffer[] = [];
    for await (const chunk of archive.openBlob(node.layers[0]?.digest ?? '', 100, 199)) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).equals(layer.subarray(100, 200))).toBe(true);
  });

  it('selects among several images by the ref.name annotation', () => {
    const roots = [
      { mediaType: 'm', digest: 'sha256:a', size: 1, annotations: { 'org.opencontainers.image.ref.name': 'v1' } },
      { mediaType: 'm', digest: 'sha256:b', size: 1, annotations: { 'org.opencontainers.image.ref.name': 'v2' } },
    ];
    expect(selectRoot({ path: 'x.tar', roots }, 'v2').digest).toBe('sha256:b');
    expect(() => selectRoot({ path: 'x.tar', roots }, 'v3')).toThrow(/lists 2 manifests \(v1, v2\)/);
  });

  it('refuses gzip-compressed archives with a hint', async () => {
    const gz = join(work, 'archive.tar.gz');
    await writeFile(gz, gzipSync(createTar([{ name: 'oci-layout', data: Buffer.from('{}') }])));
    const error = await openOciArchive(gz).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OciArchiveError);
    expect((error as OciArchiveError).hint).toMatch(/gunzip/);
  });

  it('names what is missing from a layout', async () => {
    const noIndex = join(work, 'no-index.tar');
    await writeFile(noIndex, createTar([{ name: 'oci-layout', data: Buffer.from('{"imageLayoutVersion":"1.0.0"}') }]));
    await expect(openOciArchive(noIndex)).rejects.toThrow(/has no index\.json/);
  });

  it('detects a blob whose content does not match its digest', async () => {
    const fixture = await createOciArchive(join(work, 'tampered.tar'), { diskBytes: 1000 });
    const bytes = await readFile(fixture.path);
    const manifest = fixture.images[0]?.manifest ?? Buffer.alloc(0);
    const at = bytes.indexOf(manifest);
    expect(at).toBeGreaterThan(0);
    // Flip one byte inside the manifest's JSON without changing its length.
    bytes[at + manifest.indexOf('schemaVersion')] = 'S'.charCodeAt(0);
    await writeFile(fixture.path, bytes);
    const archive = await openOciArchive(fixture.path);
    await expect(archive.loadManifest(selectRoot(archive, undefined))).rejects.toThrow(DigestMismatchError);
  });
});
