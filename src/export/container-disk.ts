import { createHash, randomBytes, type Hash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CancelledError, KibError, throwIfAborted } from '../core/errors.js';
import type { Reporter } from '../report/events.js';
import { createDeterministicGzip } from './gzip.js';
import { compareBytes } from './hash.js';
import { renderTarHeader, TAR_END, tarPadding, type TarEntry } from './tar.js';

export const OCI_MANIFEST_MEDIA_TYPE = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX_MEDIA_TYPE = 'application/vnd.oci.image.index.v1+json';
export const OCI_CONFIG_MEDIA_TYPE = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER_GZIP_MEDIA_TYPE = 'application/vnd.oci.image.layer.v1.tar+gzip';

/** KubeVirt runs containerDisks as the qemu user, UID/GID 107; the disk must be readable by it. */
export const QEMU_UID = 107;
export const QEMU_GID = 107;

const READ_CHUNK_BYTES = 1024 * 1024;
const PROGRESS_STEP_BYTES = 64 * 1024 * 1024;

export interface ContainerDiskSpec {
  /** The disk (qcow2 or raw) to put at `/disk/<diskFileName>`. Read once, streamed. */
  diskPath: string;
  /** Where the OCI archive (a tar of an OCI image layout) is written. */
  outPath: string;
  /** Image config labels; written sorted by key. */
  labels: Readonly<Record<string, string>>;
  /** Image creation time: the config's `created` and every tar entry's mtime. Without it: epoch 0, no `created`. */
  created?: Date;
  /** `org.opencontainers.image.ref.name` in index.json, e.g. `kube-v1.36.1-v0.3.0`. Default `latest`. */
  tag?: string;
  /** File name under `disk/`. Default: the disk's own file name. */
  diskFileName?: string;
  /** Default `amd64`. */
  architecture?: string;
  /** gzip level of the layer (1 = fastest, the default). */
  gzipLevel?: number;
  signal?: AbortSignal;
  reporter?: Reporter;
}

export interface ContainerDiskResult {
  path: string;
  /** `sha256:<hex>` of the image manifest: what a registry will call the image. */
  manifestDigest: string;
  layerDigest: string;
  configDigest: string;
  /** sha256 of the uncompressed layer tar (the config's `diff_id`). */
  diffId: string;
  /** Size and sha256 (hex) of the archive file itself, for SHA256SUMS. */
  sizeBytes: number;
  sha256: string;
}

/**
 * Writes a KubeVirt containerDisk as an OCI image layout in a tar archive (`oci-archive:`), without
 * a container engine. The image has one gzip layer with exactly `disk/` (0555) and
 * `disk/<file>` (0444), both owned 107:107, and nothing else; all timestamps are fixed, so the same
 * disk and labels give the same manifest digest.
 *
 * The disk is read once: the layer tar is built, hashed uncompressed (diff_id), gzipped, hashed
 * compressed and written to a temporary blob in one pass. The archive is then assembled next to
 * `outPath` and renamed into place, so a half-written archive never carries the final name.
 */
export async function writeContainerDisk(spec: ContainerDiskSpec): Promise<ContainerDiskResult> {
  const { signal } = spec;
  throwIfAborted(signal, 'Writing the containerDisk');
  const diskFileName = spec.diskFileName ?? basename(spec.diskPath);
  if (!/^[A-Za-z0-9._-]+$/.test(diskFileName) || diskFileName === '.' || diskFileName === '..') {
    throw new KibError('EXPORT_INVALID', `containerDisk file name '${diskFileName}' must match [A-Za-z0-9._-]+`);
  }
  const tag = spec.tag ?? 'latest';
  if (!/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/.test(tag)) {
    throw new KibError('EXPORT_INVALID', `containerDisk tag '${tag}' is not a valid OCI tag ([A-Za-z0-9_][A-Za-z0-9._-]{0,127})`);
  }
  const mtimeSec = spec.created === undefined ? 0 : Math.floor(spec.created.getTime() / 1000);
  if (!Number.isSafeInteger(mtimeSec) || mtimeSec < 0) throw new KibError('EXPORT_INVALID', `containerDisk creation time ${String(spec.created)} is not valid`);

  const outDir = dirname(spec.outPath);
  const nonce = randomBytes(6).toString('hex');
  const layerTmp = join(outDir, `.${basename(spec.outPath)}.layer-${nonce}.tmp`);
  const archiveTmp = join(outDir, `.${basename(spec.outPath)}.${nonce}.tmp`);
  try {
    const layer = await writeLayer({
      diskPath: spec.diskPath,
      diskFileName,
      mtimeSec,
      layerPath: layerTmp,
      gzipLevel: spec.gzipLevel ?? 1,
      ...(signal === undefined ? {} : { signal }),
      ...(spec.reporter === undefined ? {} : { reporter: spec.reporter }),
    });

    const config = renderCanonical({
      ...(spec.created === undefined ? {} : { created: rfc3339Seconds(spec.created) }),
      architecture: spec.architecture ?? 'amd64',
      os: 'linux',
      config: {
        // KubeVirt injects its own command; a placeholder keeps runtimes that insist on one happy.
        Entrypoint: ['no-entrypoint'],
        Labels: sortedRecord(spec.labels),
      },
      rootfs: { type: 'layers', diff_ids: [layer.diffId] },
    });
    const configDigest = sha256Digest(config);
    const manifest = renderCanonical({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST_MEDIA_TYPE,
      config: { mediaType: OCI_CONFIG_MEDIA_TYPE, digest: configDigest, size: config.length },
      layers: [{ mediaType: OCI_LAYER_GZIP_MEDIA_TYPE, digest: layer.digest, size: layer.sizeBytes }],
    });
    const manifestDigest = sha256Digest(manifest);
    const index = renderCanonical({
      schemaVersion: 2,
      mediaType: OCI_INDEX_MEDIA_TYPE,
      manifests: [
        {
          mediaType: OCI_MANIFEST_MEDIA_TYPE,
          digest: manifestDigest,
          size: manifest.length,
          platform: { architecture: spec.architecture ?? 'amd64', os: 'linux' },
          annotations: { 'org.opencontainers.image.ref.name': tag },
        },
      ],
    });
    const layout = renderCanonical({ imageLayoutVersion: '1.0.0' });

    const archive = await writeArchive({
      path: archiveTmp,
      mtimeSec,
      layout,
      index,
      blobs: [
        { digest: configDigest, content: config },
        { digest: manifestDigest, content: manifest },
      ],
      layer: { digest: layer.digest, path: layerTmp, sizeBytes: layer.sizeBytes },
      ...(signal === undefined ? {} : { signal }),
    });
    await rename(archiveTmp, spec.outPath);
    return {
      path: spec.outPath,
      manifestDigest,
      layerDigest: layer.digest,
      configDigest,
      diffId: layer.diffId,
      sizeBytes: archive.sizeBytes,
      sha256: archive.sha256,
    };
  } catch (error) {
    await rm(archiveTmp, { force: true });
    if (signal?.aborted === true) throw new CancelledError('Writing the containerDisk');
    throw error;
  } finally {
    await rm(layerTmp, { force: true });
  }
}

interface LayerResult {
  digest: string;
  diffId: string;
  sizeBytes: number;
}

async function writeLayer(options: {
  diskPath: string;
  diskFileName: string;
  mtimeSec: number;
  layerPath: string;
  gzipLevel: number;
  signal?: AbortSignal;
  reporter?: Reporter;
}): Promise<LayerResult> {
  const handle = await open(options.diskPath, 'r');
  try {
    // One handle for stat and read: the size in the tar header is the size we then stream.
    const diskSize = (await handle.stat()).size;
    const owner = { uid: QEMU_UID, gid: QEMU_GID, mtimeSec: options.mtimeSec };
    const dirEntry: TarEntry = { name: 'disk/', type: 'directory', mode: 0o555, sizeBytes: 0, ...owner };
    const fileEntry: TarEntry = { name: `disk/${options.diskFileName}`, type: 'file', mode: 0o444, sizeBytes: diskSize, ...owner };

    let read = 0;
    let nextProgress = PROGRESS_STEP_BYTES;
    async function* tarStream(): AsyncGenerator<Buffer> {
      yield renderTarHeader(dirEntry);
      yield renderTarHeader(fileEntry);
      for await (const chunk of handle.createReadStream({ highWaterMark: READ_CHUNK_BYTES, autoClose: false, start: 0 })) {
        const buffer = chunk as Buffer;
        read += buffer.length;
        if (read > diskSize) break;
        if (read >= nextProgress) {
          nextProgress = read + PROGRESS_STEP_BYTES;
          options.reporter?.emit({ type: 'progress', phase: 'export', label: 'containerdisk', done: read, total: diskSize, unit: 'bytes' });
        }
        yield buffer;
      }
      if (read !== diskSize) {
        throw new KibError('EXPORT_INVALID', `${options.diskPath} changed while it was being packed: read ${read} bytes, expected ${diskSize}`);
      }
      options.reporter?.emit({ type: 'progress', phase: 'export', label: 'containerdisk', done: read, total: diskSize, unit: 'bytes' });
      yield tarPadding(diskSize);
      yield TAR_END;
    }

    const uncompressed = hashingTap();
    const compressed = hashingTap();
    await pipeline(
      Readable.from(tarStream(), { objectMode: false }),
      uncompressed.stream,
      createDeterministicGzip({ level: options.gzipLevel }),
      compressed.stream,
      createWriteStream(options.layerPath),
      options.signal === undefined ? {} : { signal: options.signal },
    );
    return { digest: compressed.digest(), diffId: uncompressed.digest(), sizeBytes: compressed.bytes() };
  } finally {
    await handle.close();
  }
}

async function writeArchive(options: {
  path: string;
  mtimeSec: number;
  layout: Buffer;
  index: Buffer;
  blobs: readonly { digest: string; content: Buffer }[];
  layer: { digest: string; path: string; sizeBytes: number };
  signal?: AbortSignal;
}): Promise<{ sizeBytes: number; sha256: string }> {
  const base = { uid: 0, gid: 0, mtimeSec: options.mtimeSec };
  const file = (name: string, sizeBytes: number): Buffer => renderTarHeader({ name, type: 'file', mode: 0o644, sizeBytes, ...base });
  const dir = (name: string): Buffer => renderTarHeader({ name, type: 'directory', mode: 0o755, sizeBytes: 0, ...base });
  const blobPath = (digest: string): string => `blobs/sha256/${digest.slice('sha256:'.length)}`;
  const layerSize = (await stat(options.layer.path)).size;
  if (layerSize !== options.layer.sizeBytes) {
    throw new KibError('EXPORT_INVALID', `layer blob is ${layerSize} bytes on disk, ${options.layer.sizeBytes} were written`);
  }

  async function* entries(): AsyncGenerator<Buffer> {
    // Metadata first, so a reader streaming the archive meets index.json before the large blob.
    yield file('oci-layout', options.layout.length);
    yield options.layout;
    yield tarPadding(options.layout.length);
    yield file('index.json', options.index.length);
    yield options.index;
    yield tarPadding(options.index.length);
    yield dir('blobs/');
    yield dir('blobs/sha256/');
    for (const blob of options.blobs) {
      yield file(blobPath(blob.digest), blob.content.length);
      yield blob.content;
      yield tarPadding(blob.content.length);
    }
    yield file(blobPath(options.layer.digest), options.layer.sizeBytes);
    const handle = await open(options.layer.path, 'r');
    try {
      for await (const chunk of handle.createReadStream({ highWaterMark: READ_CHUNK_BYTES, autoClose: false, start: 0 })) {
        yield chunk as Buffer;
      }
    } finally {
      await handle.close();
    }
    yield tarPadding(options.layer.sizeBytes);
    yield TAR_END;
  }

  const tap = hashingTap();
  await pipeline(
    Readable.from(entries(), { objectMode: false }),
    tap.stream,
    createWriteStream(options.path),
    options.signal === undefined ? {} : { signal: options.signal },
  );
  return { sizeBytes: tap.bytes(), sha256: tap.digest().slice('sha256:'.length) };
}

function hashingTap(): { stream: Transform; digest: () => string; bytes: () => number } {
  const hash: Hash = createHash('sha256');
  let bytes = 0;
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      hash.update(chunk);
      bytes += chunk.length;
      callback(null, chunk);
    },
  });
  let digest: string | undefined;
  return {
    stream,
    digest: () => (digest ??= `sha256:${hash.digest('hex')}`),
    bytes: () => bytes,
  };
}

/**
 * JSON with object keys sorted (byte order) and no whitespace: the digest of a config or
 * manifest must not depend on how the object was put together.
 */
export function renderCanonical(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(sortKeys(value)), 'utf8');
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort(compareBytes)) out[key] = sortKeys((value as Record<string, unknown>)[key]);
    return out;
  }
  return value;
}

function sortedRecord(record: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of Object.keys(record).sort(compareBytes)) {
    const value = record[key];
    if (typeof value !== 'string') throw new KibError('EXPORT_INVALID', `containerDisk label ${key} must be a string`);
    out[key] = value;
  }
  return out;
}

function sha256Digest(content: Buffer): string {
  return `sha256:${createHash('sha256').update(content).digest('hex')}`;
}

function rfc3339Seconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
