import { createHash, type Hash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { CancelledError, throwIfAborted } from '../core/errors.js';
import { silentReporter, type Reporter } from '../report/events.js';
import { DigestMismatchError, RegistryError } from './errors.js';
import { openOciArchive, selectRoot, type Descriptor, type ManifestNode, type OciArchive } from './oci-archive.js';
import { formatImageReference, parseImageReference, registryBaseUrl } from './reference.js';
import { RegistryClient, type RegistryAuth } from './registry-client.js';

export interface PushContainerDiskOptions {
  /** The containerDisk OCI archive written by the export phase (a plain tar OCI image layout). */
  archivePath: string;
  /** `host[:port]/repository[:tag][@sha256:…]`; the tag defaults to `latest`. */
  reference: string;
  auth?: RegistryAuth;
  /** Talk plain HTTP to a registry that is not on loopback. */
  insecureHttp?: boolean;
  /**
   * Blobs larger than this are uploaded in PATCH chunks of this size; smaller ones in one PUT.
   * `Infinity` uploads every blob in one PUT. Default 64 MiB.
   */
  chunkSizeBytes?: number;
  signal?: AbortSignal;
  reporter?: Reporter;
}

export interface PushContainerDiskResult {
  /** Digest of the pushed top-level manifest (or index). */
  digest: string;
  /** The pushed reference pinned to that digest: `host/repo:tag@sha256:…`. */
  reference: string;
  uploadedBlobs: number;
  /** Blobs the registry already had (HEAD answered 200). */
  skippedBlobs: number;
  uploadedBytes: number;
}

/** 64 MiB: few round trips for multi-GiB layers, small enough that a retry loses little. */
export const DEFAULT_CHUNK_SIZE_BYTES = 64 * 1024 * 1024;
const PROGRESS_INTERVAL_MS = 500;

/**
 * Pushes a containerDisk OCI archive to a registry with the OCI distribution API: every blob the
 * registry lacks is streamed out of the archive (monolithic PUT, or POST + PATCH chunks + PUT for
 * large ones), then the manifest is PUT under the tag and the digest the registry reports is
 * checked against ours.
 */
export async function pushContainerDisk(options: PushContainerDiskOptions): Promise<PushContainerDiskResult> {
  const { archivePath, reporter = silentReporter, signal } = options;
  const chunkSizeBytes = options.chunkSizeBytes ?? DEFAULT_CHUNK_SIZE_BYTES;
  if (!(chunkSizeBytes > 0)) throw new RangeError(`chunkSizeBytes must be positive, got ${chunkSizeBytes}`);
  const ref = parseImageReference(options.reference);
  throwIfAborted(signal, 'Pushing the containerDisk');

  const startedMs = performance.now();
  reporter.emit({ type: 'phase-start', phase: 'push', title: `Push ${archivePath} to ${formatImageReference(ref)}` });
  let ok = false;
  const client = new RegistryClient({
    registry: ref.registry,
    baseUrl: registryBaseUrl(ref, options.insecureHttp ?? false),
    repository: ref.repository,
    auth: options.auth,
    signal,
  });
  try {
    const archive = await openOciArchive(archivePath);
    const root = await archive.loadManifest(selectRoot(archive, ref.tag));
    if (ref.digest !== undefined && ref.digest !== root.descriptor.digest) {
      throw new DigestMismatchError(`the reference ${options.reference} asks for a manifest the archive does not hold`, ref.digest, root.descriptor.digest);
    }
    await client.ping();

    const blobs = uniqueBlobs(root);
    let uploadedBlobs = 0;
    let skippedBlobs = 0;
    let uploadedBytes = 0;
    const totalBytes = blobs.reduce((sum, blob) => sum + blob.size, 0);
    let doneBytes = 0;
    let lastProgressMs = 0;
    const progress = (force: boolean): void => {
      const now = performance.now();
      if (!force && now - lastProgressMs < PROGRESS_INTERVAL_MS) return;
      lastProgressMs = now;
      reporter.emit({ type: 'progress', phase: 'push', label: 'blobs', done: doneBytes, total: totalBytes, unit: 'bytes' });
    };

    for (const blob of blobs) {
      throwIfAborted(signal, 'Pushing the containerDisk');
      const head = await client.request('HEAD', `/v2/${ref.repository}/blobs/${blob.digest}`, { expect: [200, 404], what: `the existence check of blob ${blob.digest}` });
      if (head.status === 200) {
        skippedBlobs++;
        doneBytes += blob.size;
        reporter.emit({ type: 'log', source: 'push', line: `blob ${blob.digest} (${blob.size} bytes) already present, skipped` });
        progress(true);
        continue;
      }
      const mode = await uploadBlob(client, archive, ref.repository, blob, chunkSizeBytes, (bytes) => {
        doneBytes += bytes;
        progress(false);
      });
      uploadedBlobs++;
      uploadedBytes += blob.size;
      reporter.emit({ type: 'log', source: 'push', line: `blob ${blob.digest} (${blob.size} bytes) uploaded (${mode})` });
      progress(true);
    }

    await putManifests(client, ref.repository, root, ref.tag ?? root.descriptor.digest, reporter);
    const digest = root.descriptor.digest;
    const pinned = formatImageReference({ ...ref, digest });
    reporter.emit({ type: 'step', phase: 'push', message: `pushed ${pinned} (${uploadedBlobs} blob(s) uploaded, ${skippedBlobs} already present)` });
    ok = true;
    return { digest, reference: pinned, uploadedBlobs, skippedBlobs, uploadedBytes };
  } catch (error) {
    if (signal?.aborted === true && !(error instanceof CancelledError)) throw new CancelledError('Pushing the containerDisk');
    throw error;
  } finally {
    client.close();
    reporter.emit({ type: 'phase-end', phase: 'push', durationMs: Math.round(performance.now() - startedMs), ok });
  }
}

/** Config and layer blobs of every image under the root, each once, in manifest order. */
function uniqueBlobs(node: ManifestNode): Descriptor[] {
  const seen = new Map<string, Descriptor>();
  const visit = (current: ManifestNode): void => {
    if (current.kind === 'index') {
      for (const child of current.children) visit(child);
      return;
    }
    for (const blob of [current.config, ...current.layers]) if (!seen.has(blob.digest)) seen.set(blob.digest, blob);
  };
  visit(node);
  return [...seen.values()];
}

async function uploadBlob(
  client: RegistryClient,
  archive: OciArchive,
  repository: string,
  blob: Descriptor,
  chunkSizeBytes: number,
  onBytes: (bytes: number) => void,
): Promise<'monolithic' | 'chunked'> {
  const started = await client.request('POST', `/v2/${repository}/blobs/uploads/`, { expect: [202], what: `starting the upload of blob ${blob.digest}` });
  let location = uploadLocation(client, started.headers.location, blob.digest);
  // Each attempt hashes into a copy, so a body sent twice (after an auth challenge) is counted once.
  let hash = createHash('sha256');
  const tapped = (start: number, end: number): { body: () => Readable; result: () => Hash } => {
    let attemptHash = hash;
    return {
      body: () => {
        attemptHash = hash.copy();
        const stream = archive.openBlob(blob.digest, start, end);
        const forHash = attemptHash;
        stream.on('data', (chunk: Buffer) => {
          forHash.update(chunk);
          onBytes(chunk.length);
        });
        return stream;
      },
      result: () => attemptHash,
    };
  };

  if (blob.size <= chunkSizeBytes) {
    const body = tapped(0, blob.size - 1);
    const url = withDigest(location, blob.digest);
    const response = await client
      .request('PUT', url, {
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': blob.size },
        body: blob.size === 0 ? Buffer.alloc(0) : body.body,
        expect: [201],
        what: `the upload of blob ${blob.digest}`,
      })
      .catch((error: unknown) => {
        checkDigest(blob, blob.size === 0 ? createHash('sha256') : body.result());
        throw error;
      });
    if (blob.size > 0) checkDigest(blob, body.result());
    checkReportedDigest(response.headers['docker-content-digest'], blob.digest, `blob ${blob.digest}`);
    return 'monolithic';
  }

  for (let start = 0; start < blob.size; start += chunkSizeBytes) {
    const end = Math.min(blob.size, start + chunkSizeBytes) - 1;
    const body = tapped(start, end);
    const response = await client.request('PATCH', location, {
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': end - start + 1, 'Content-Range': `${start}-${end}` },
      body: body.body,
      expect: [202],
      what: `chunk ${start}-${end} of blob ${blob.digest}`,
    });
    hash = body.result();
    location = uploadLocation(client, response.headers.location, blob.digest, location);
  }
  checkDigest(blob, hash);
  const done = await client.request('PUT', withDigest(location, blob.digest), {
    headers: { 'Content-Length': 0 },
    body: Buffer.alloc(0),
    expect: [201],
    what: `finishing the upload of blob ${blob.digest}`,
  });
  checkReportedDigest(done.headers['docker-content-digest'], blob.digest, `blob ${blob.digest}`);
  return 'chunked';
}

/** Child manifests by digest first (the registry checks an index's references), then the root under its tag. */
async function putManifests(client: RegistryClient, repository: string, node: ManifestNode, target: string, reporter: Reporter): Promise<void> {
  if (node.kind === 'index') {
    for (const child of node.children) await putManifests(client, repository, child, child.descriptor.digest, reporter);
  }
  const response = await client.request('PUT', `/v2/${repository}/manifests/${target}`, {
    headers: { 'Content-Type': node.mediaType, 'Content-Length': node.bytes.length },
    body: node.bytes,
    expect: [201],
    what: `the upload of manifest ${node.descriptor.digest}`,
  });
  const reported = response.headers['docker-content-digest'];
  if (reported === undefined) {
    reporter.emit({ type: 'warning', message: `registry ${client.registry} did not report a digest for manifest ${target}; trusting our own ${node.descriptor.digest}` });
  }
  checkReportedDigest(reported, node.descriptor.digest, `manifest ${target} on ${client.registry}`);
}

function checkDigest(blob: Descriptor, hash: Hash): void {
  const actual = `sha256:${hash.copy().digest('hex')}`;
  if (actual !== blob.digest) throw new DigestMismatchError(`blob ${blob.digest} read from the archive`, blob.digest, actual);
}

function checkReportedDigest(reported: string | string[] | undefined, expected: string, what: string): void {
  const value = Array.isArray(reported) ? reported[0] : reported;
  if (value !== undefined && value !== expected) throw new DigestMismatchError(`${what}: the registry stored different content`, expected, value);
}

function uploadLocation(client: RegistryClient, header: string | undefined, digest: string, previous?: URL): URL {
  if (header === undefined || header === '') {
    throw new RegistryError({
      registry: client.registry,
      method: previous === undefined ? 'POST' : 'PATCH',
      url: previous?.href ?? `${client.baseUrl.origin}/v2/${client.repository}/blobs/uploads/`,
      status: 202,
      what: `the upload of blob ${digest}`,
      detail: 'the answer has no Location header',
    });
  }
  return new URL(header, previous ?? client.baseUrl);
}

function withDigest(location: URL, digest: string): URL {
  const url = new URL(location.href);
  url.searchParams.append('digest', digest);
  return url;
}
