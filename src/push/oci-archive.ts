import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import { DigestMismatchError, OciArchiveError } from './errors.js';
import { indexTar, TarFormatError, type TarEntry } from './tar-index.js';

export const MEDIA_TYPES = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
} as const;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

/** An image manifest or an index, with the exact bytes its digest covers. */
export type ManifestNode =
  | { kind: 'image'; descriptor: Descriptor; mediaType: string; bytes: Buffer; config: Descriptor; layers: Descriptor[] }
  | { kind: 'index'; descriptor: Descriptor; mediaType: string; bytes: Buffer; children: ManifestNode[] };

export interface OciArchive {
  path: string;
  /** The top-level descriptors of index.json. */
  roots: Descriptor[];
  has(digest: string): boolean;
  /** Streams bytes [start, end] (inclusive) of a blob straight out of the tar file. */
  openBlob(digest: string, start?: number, end?: number): Readable;
  readBlob(digest: string): Promise<Buffer>;
  /** Reads a manifest (and, for an index, every child manifest) and checks their digests. */
  loadManifest(descriptor: Descriptor): Promise<ManifestNode>;
}

const REF_NAME = 'org.opencontainers.image.ref.name';
const DIGEST_PATTERN = /^sha256:[a-f0-9]{64}$/;
/** Manifests are small; a huge one means a broken archive, not something to read into memory. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/**
 * Opens an OCI image layout packed in a tar file (`oci-layout`, `index.json`, `blobs/sha256/*`),
 * as the export phase and `skopeo copy … oci-archive:` write it. Nothing is extracted.
 */
export async function openOciArchive(path: string): Promise<OciArchive> {
  const magic = Buffer.alloc(2);
  try {
    const handle = await open(path, 'r');
    try {
      await handle.read(magic, 0, 2, 0);
    } finally {
      await handle.close();
    }
  } catch (error) {
    throw new OciArchiveError(path, `cannot open it (${(error as Error).message})`, { cause: error });
  }
  if (magic[0] === 0x1f && magic[1] === 0x8b) {
    throw new OciArchiveError(path, 'it is gzip-compressed; an OCI archive is a plain tar', { hint: `Decompress it first: gunzip -k ${path}` });
  }

  let entries: Map<string, TarEntry>;
  try {
    entries = await indexTar(path);
  } catch (error) {
    if (error instanceof TarFormatError) throw new OciArchiveError(path, error.message, { cause: error });
    throw new OciArchiveError(path, `cannot read it (${(error as Error).message})`, { cause: error });
  }

  const readMember = async (name: string, limit: number): Promise<Buffer> => {
    const entry = resolveMember(entries, name);
    if (entry === undefined) throw new OciArchiveError(path, `it has no ${name}`);
    if (entry.sizeBytes > limit) throw new OciArchiveError(path, `${name} is ${entry.sizeBytes} bytes, more than the ${limit} allowed`);
    if (entry.sizeBytes === 0) return Buffer.alloc(0);
    return await readStream(createReadStream(path, { start: entry.offset, end: entry.offset + entry.sizeBytes - 1 }), entry.sizeBytes);
  };
  const parseJson = (name: string, bytes: Buffer): unknown => {
    try {
      return JSON.parse(bytes.toString('utf8')) as unknown;
    } catch (error) {
      throw new OciArchiveError(path, `${name} is not valid JSON`, { cause: error });
    }
  };

  const layout = parseJson('oci-layout', await readMember('oci-layout', 64 * 1024)) as { imageLayoutVersion?: unknown };
  if (typeof layout.imageLayoutVersion !== 'string') throw new OciArchiveError(path, 'oci-layout has no imageLayoutVersion');
  const index = parseJson('index.json', await readMember('index.json', MAX_MANIFEST_BYTES)) as { manifests?: unknown };
  if (!Array.isArray(index.manifests) || index.manifests.length === 0) throw new OciArchiveError(path, 'index.json lists no manifests');
  const roots = index.manifests.map((item, i) => toDescriptor(path, item, `index.json manifests[${i}]`));

  const blobEntry = (digest: string): TarEntry => {
    if (!DIGEST_PATTERN.test(digest)) throw new OciArchiveError(path, `unsupported digest '${digest}' (only sha256)`);
    const entry = resolveMember(entries, `blobs/sha256/${digest.slice('sha256:'.length)}`);
    if (entry === undefined) throw new OciArchiveError(path, `blob ${digest} is missing`);
    return entry;
  };

  const readBlob = async (digest: string): Promise<Buffer> => {
    const entry = blobEntry(digest);
    if (entry.sizeBytes > MAX_MANIFEST_BYTES) throw new OciArchiveError(path, `blob ${digest} is too large to be a manifest`);
    const bytes = await readStream(openBlob(digest), entry.sizeBytes);
    const actual = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    if (actual !== digest) throw new DigestMismatchError(`blob in ${path}`, digest, actual);
    return bytes;
  };

  const openBlob = (digest: string, start = 0, end?: number): Readable => {
    const entry = blobEntry(digest);
    const last = Math.min(end ?? entry.sizeBytes - 1, entry.sizeBytes - 1);
    if (last < start) return Readable.from([]);
    return createReadStream(path, { start: entry.offset + start, end: entry.offset + last, highWaterMark: 1024 * 1024 });
  };

  const loadManifest = async (descriptor: Descriptor, depth = 0): Promise<ManifestNode> => {
    if (depth > 2) throw new OciArchiveError(path, 'indexes are nested too deeply');
    const bytes = await readBlob(descriptor.digest);
    if (bytes.length !== descriptor.size) {
      throw new OciArchiveError(path, `manifest ${descriptor.digest} is ${bytes.length} bytes, its descriptor says ${descriptor.size}`);
    }
    const json = parseJson(`manifest ${descriptor.digest}`, bytes) as {
      mediaType?: unknown;
      manifests?: unknown;
      config?: unknown;
      layers?: unknown;
    };
    const mediaType =
      nonEmpty(json.mediaType) ?? nonEmpty(descriptor.mediaType) ?? (Array.isArray(json.manifests) ? MEDIA_TYPES.ociIndex : MEDIA_TYPES.ociManifest);
    if (mediaType === MEDIA_TYPES.ociIndex || mediaType === MEDIA_TYPES.dockerManifestList) {
      if (!Array.isArray(json.manifests)) throw new OciArchiveError(path, `index ${descriptor.digest} has no manifests`);
      const children: ManifestNode[] = [];
      for (const [i, item] of json.manifests.entries()) {
        children.push(await loadManifest(toDescriptor(path, item, `${descriptor.digest} manifests[${i}]`), depth + 1));
      }
      return { kind: 'index', descriptor, mediaType, bytes, children };
    }
    if (mediaType !== MEDIA_TYPES.ociManifest && mediaType !== MEDIA_TYPES.dockerManifest) {
      throw new OciArchiveError(path, `manifest ${descriptor.digest} has unsupported media type ${mediaType}`);
    }
    const config = toDescriptor(path, json.config, `${descriptor.digest} config`);
    if (!Array.isArray(json.layers)) throw new OciArchiveError(path, `manifest ${descriptor.digest} has no layers`);
    const layers = json.layers.map((item, i) => toDescriptor(path, item, `${descriptor.digest} layers[${i}]`));
    for (const blob of [config, ...layers]) {
      const entry = blobEntry(blob.digest);
      if (entry.sizeBytes !== blob.size) {
        throw new OciArchiveError(path, `blob ${blob.digest} is ${entry.sizeBytes} bytes, the manifest says ${blob.size}`);
      }
    }
    return { kind: 'image', descriptor, mediaType, bytes, config, layers };
  };

  return {
    path,
    roots,
    has: (digest) => DIGEST_PATTERN.test(digest) && resolveMember(entries, `blobs/sha256/${digest.slice(7)}`) !== undefined,
    openBlob,
    readBlob,
    loadManifest: (descriptor) => loadManifest(descriptor),
  };
}

/**
 * Picks the manifest to push: the only one, or the one whose `org.opencontainers.image.ref.name`
 * annotation equals the tag being pushed.
 */
export function selectRoot(archive: Pick<OciArchive, 'path' | 'roots'>, tag: string | undefined): Descriptor {
  const [only, ...others] = archive.roots;
  if (only !== undefined && others.length === 0) return only;
  const named = archive.roots.filter((root) => tag !== undefined && root.annotations?.[REF_NAME] === tag);
  if (named.length === 1 && named[0] !== undefined) return named[0];
  const names = archive.roots.map((root) => root.annotations?.[REF_NAME] ?? root.digest).join(', ');
  throw new OciArchiveError(archive.path, `index.json lists ${archive.roots.length} manifests (${names}) and none is named '${tag ?? ''}'`, {
    hint: 'Push with a tag equal to one of the names listed, or export a single image.',
  });
}

function nonEmpty(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function resolveMember(entries: ReadonlyMap<string, TarEntry>, name: string): TarEntry | undefined {
  let entry = entries.get(name);
  // Writers may store identical blobs once and hard-link the rest.
  for (let hops = 0; entry !== undefined && entry.type === 'hardlink' && entry.linkName !== undefined && hops < 8; hops++) {
    entry = entries.get(entry.linkName.replace(/^\.\//, ''));
  }
  return entry?.type === 'file' ? entry : undefined;
}

function toDescriptor(path: string, value: unknown, where: string): Descriptor {
  const item = value as Partial<Record<keyof Descriptor, unknown>> | null;
  if (item === null || typeof item !== 'object' || typeof item.digest !== 'string' || typeof item.size !== 'number') {
    throw new OciArchiveError(path, `${where} is not a descriptor with digest and size`);
  }
  return {
    mediaType: typeof item.mediaType === 'string' ? item.mediaType : '',
    digest: item.digest,
    size: item.size,
    ...(item.annotations !== null && typeof item.annotations === 'object' ? { annotations: item.annotations as Record<string, string> } : {}),
  };
}

async function readStream(stream: Readable, expectedBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  const bytes = Buffer.concat(chunks);
  if (bytes.length !== expectedBytes) throw new Error(`read ${bytes.length} bytes, expected ${expectedBytes}`);
  return bytes;
}
