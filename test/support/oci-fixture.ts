import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';

/**
 * Small OCI archives for push tests, written the way a containerDisk is laid out: one gzip layer
 * holding `disk/` (0555) and `disk/disk.img` (0444), both owned by 107:107, packed as an OCI image
 * layout in a plain tar (oci-layout, index.json, blobs/sha256/*).
 */

export interface TarMember {
  name: string;
  type?: 'file' | 'directory';
  data?: Buffer;
  mode?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
}

/** A ustar archive in memory (names up to 100 bytes, which is all an OCI layout needs). */
export function createTar(members: readonly TarMember[]): Buffer {
  const blocks: Buffer[] = [];
  for (const member of members) {
    const data = member.type === 'directory' ? Buffer.alloc(0) : (member.data ?? Buffer.alloc(0));
    const header = Buffer.alloc(512);
    const name = member.type === 'directory' && !member.name.endsWith('/') ? `${member.name}/` : member.name;
    if (Buffer.byteLength(name) > 100) throw new Error(`tar name too long for this fixture writer: ${name}`);
    header.write(name, 0, 100, 'utf8');
    header.write(octal(member.mode ?? (member.type === 'directory' ? 0o755 : 0o644), 8), 100, 'latin1');
    header.write(octal(member.uid ?? 0, 8), 108, 'latin1');
    header.write(octal(member.gid ?? 0, 8), 116, 'latin1');
    header.write(octal(data.length, 12), 124, 'latin1');
    header.write(octal(0, 12), 136, 'latin1');
    header.write('        ', 148, 'latin1');
    header.write(member.type === 'directory' ? '5' : '0', 156, 'latin1');
    header.write('ustar\u000000', 257, 'latin1');
    header.write(member.uname ?? '', 265, 32, 'latin1');
    header.write(member.gname ?? '', 297, 32, 'latin1');
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 'latin1');
    blocks.push(header, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\u0000`;
}

export function digestOf(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export interface OciImageFixture {
  manifest: Buffer;
  manifestDigest: string;
  mediaType: string;
  config: Buffer;
  layers: Buffer[];
}

export interface OciArchiveFixture {
  path: string;
  /** Digest of what index.json points at (an image manifest, or an index for multi-arch). */
  rootDigest: string;
  rootMediaType: string;
  images: OciImageFixture[];
  /** Every blob in the archive by digest. */
  blobs: Map<string, Buffer>;
}

export interface CreateOciArchiveOptions {
  /** Size of the random disk image inside the layer (random data does not compress). */
  diskBytes?: number;
  /** OCI media types (default) or Docker schema 2 ones. */
  flavor?: 'oci' | 'docker';
  /** Written as org.opencontainers.image.ref.name on the index entry. */
  refName?: string;
  /** Two images (amd64, arm64) under an image index. */
  multiArch?: boolean;
}

export async function createOciArchive(path: string, options: CreateOciArchiveOptions = {}): Promise<OciArchiveFixture> {
  const flavor = options.flavor ?? 'oci';
  const types =
    flavor === 'oci'
      ? {
          manifest: 'application/vnd.oci.image.manifest.v1+json',
          index: 'application/vnd.oci.image.index.v1+json',
          config: 'application/vnd.oci.image.config.v1+json',
          layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
        }
      : {
          manifest: 'application/vnd.docker.distribution.manifest.v2+json',
          index: 'application/vnd.docker.distribution.manifest.list.v2+json',
          config: 'application/vnd.docker.container.image.v1+json',
          layer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
        };
  const blobs = new Map<string, Buffer>();
  const addBlob = (data: Buffer): string => {
    const digest = digestOf(data);
    blobs.set(digest, data);
    return digest;
  };

  const architectures = options.multiArch === true ? ['amd64', 'arm64'] : ['amd64'];
  const images: OciImageFixture[] = [];
  for (const architecture of architectures) {
    const layerTar = createTar([
      { name: 'disk', type: 'directory', mode: 0o555, uid: 107, gid: 107, uname: 'qemu', gname: 'qemu' },
      { name: 'disk/disk.img', data: randomBytes(options.diskBytes ?? 64 * 1024), mode: 0o444, uid: 107, gid: 107, uname: 'qemu', gname: 'qemu' },
    ]);
    const layer = gzipSync(layerTar, { level: 1 });
    const config = Buffer.from(
      JSON.stringify({
        architecture,
        os: 'linux',
        config: { Entrypoint: ['no-entrypoint'] },
        rootfs: { type: 'layers', diff_ids: [digestOf(layerTar)] },
      }),
    );
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: types.manifest,
        config: { mediaType: types.config, digest: addBlob(config), size: config.length },
        layers: [{ mediaType: types.layer, digest: addBlob(layer), size: layer.length }],
      }),
    );
    images.push({ manifest, manifestDigest: addBlob(manifest), mediaType: types.manifest, config, layers: [layer] });
  }

  let root: { mediaType: string; digest: string; size: number; platform?: unknown };
  if (options.multiArch === true) {
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: types.index,
        manifests: images.map((image, i) => ({
          mediaType: types.manifest,
          digest: image.manifestDigest,
          size: image.manifest.length,
          platform: { architecture: architectures[i], os: 'linux' },
        })),
      }),
    );
    root = { mediaType: types.index, digest: addBlob(index), size: index.length };
  } else {
    const [image] = images;
    if (image === undefined) throw new Error('no image');
    root = { mediaType: types.manifest, digest: image.manifestDigest, size: image.manifest.length };
  }

  const indexJson = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{ ...root, ...(options.refName === undefined ? {} : { annotations: { 'org.opencontainers.image.ref.name': options.refName } }) }],
    }),
  );
  const members: TarMember[] = [
    { name: 'blobs', type: 'directory' },
    { name: 'blobs/sha256', type: 'directory' },
    ...[...blobs].map(([digest, data]) => ({ name: `blobs/sha256/${digest.slice('sha256:'.length)}`, data })),
    { name: 'index.json', data: indexJson },
    { name: 'oci-layout', data: Buffer.from('{"imageLayoutVersion":"1.0.0"}') },
  ];
  await writeFile(path, createTar(members));
  return { path, rootDigest: root.digest, rootMediaType: root.mediaType, images, blobs };
}
