import { createHash, randomBytes, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, mkdir, open, readFile, rename, rm, stat, truncate, type FileHandle } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CancelledError, ChecksumMismatchError, describeFetchError, KibError, NetworkError } from '../core/errors.js';
import type { BaseImage } from '../core/types.js';
import { type Reporter, silentReporter } from '../report/events.js';
import { findChecksum, parseChecksumFile } from './checksum.js';
import {
  baseStoreDir,
  detectImageFormat,
  findStoredByUrl,
  storedImagePath,
  storedImageSize,
  writeFileAtomic,
  writeStoreMetadata,
} from './store.js';

export interface BaseImageSource {
  /** http(s) URL, file URL, or local path. */
  url: string;
  /** A checksum file listing the image (GNU or BSD format, possibly clear-signed). */
  checksumUrl?: string | undefined;
  /** The expected sha256; when given, checksumUrl is not consulted. */
  sha256?: string | undefined;
}

export interface FetchBaseImageOptions {
  /** The kib cache directory; images are stored under `<cacheDir>/base/sha256/`. */
  cacheDir: string;
  signal?: AbortSignal | undefined;
  reporter?: Reporter | undefined;
  /** Replaces the global fetch (tests). */
  fetchImpl?: typeof fetch | undefined;
  /** Time allowed until response headers arrive; short, so that being offline fails fast. */
  connectTimeoutMs?: number | undefined;
  /** Time allowed without receiving any data once the body is flowing. */
  stallTimeoutMs?: number | undefined;
  /** Attempts per download; a retry resumes where the previous attempt stopped. */
  maxAttempts?: number | undefined;
}

/** A BaseImage, plus how it was verified and whether it was already cached. */
export interface FetchedBaseImage extends BaseImage {
  /** `sha256`: a pinned sha256; `checksum-file`: the checksum file; `none`: nothing to compare with. */
  verifiedBy: 'sha256' | 'checksum-file' | 'none';
  fromCache: boolean;
}

export const OFFLINE_HINT =
  'build from a local base with --base PATH (e.g. a Rocky 9 GenericCloud qcow2 you downloaded elsewhere), or run kib fetch where the network allows and copy the cache';

const USER_AGENT = 'kube-image-builder';
const PROGRESS_INTERVAL_MS = 200;
const MAX_CHECKSUM_FILE_BYTES = 4 * 1024 * 1024;

interface Context {
  cacheDir: string;
  storeDir: string;
  signal: AbortSignal | undefined;
  reporter: Reporter;
  fetchImpl: typeof fetch;
  connectTimeoutMs: number;
  stallTimeoutMs: number;
  maxAttempts: number;
}

interface Expected {
  sha256: string;
  by: 'sha256' | 'checksum-file';
}

/**
 * Returns the base image from the content-addressed store, fetching and verifying it first if it
 * is not there. With a known sha256 (pinned, or read from the checksum file) and the image already
 * stored, nothing touches the network. Downloads stream into `<hex>.partial` in the store while
 * being hashed, resume with a Range request after an interruption, and are renamed into place only
 * once verified; a checksum mismatch leaves neither an entry nor a partial file behind.
 */
export async function fetchBaseImage(source: BaseImageSource, options: FetchBaseImageOptions): Promise<FetchedBaseImage> {
  const ctx: Context = {
    cacheDir: options.cacheDir,
    storeDir: baseStoreDir(options.cacheDir),
    signal: options.signal,
    reporter: options.reporter ?? silentReporter,
    fetchImpl: options.fetchImpl ?? globalThis.fetch,
    connectTimeoutMs: options.connectTimeoutMs ?? 15_000,
    stallTimeoutMs: options.stallTimeoutMs ?? 60_000,
    maxAttempts: Math.max(1, options.maxAttempts ?? 4),
  };
  checkCancelled(ctx);
  await mkdir(ctx.storeDir, { recursive: true });

  const remote = isHttpUrl(source.url);
  const requestUrl = remote ? source.url.trim() : pathToFileURL(localPath(source.url)).href;
  const expected = await resolveExpected(source, requestUrl, ctx);
  if (expected !== undefined) {
    const hit = await cacheHit(expected.sha256, requestUrl, expected.by, ctx);
    if (hit !== undefined) return hit;
  }
  if (!remote) return importLocal(localPath(source.url), source, expected, ctx);

  if (expected === undefined) {
    const known = await findStoredByUrl(ctx.cacheDir, requestUrl);
    if (known !== undefined) {
      ctx.reporter.emit({
        type: 'warning',
        message: `no sha256 or checksum file for ${requestUrl}; using the copy fetched ${known.metadata.fetchedAt} (sha256 ${known.sha256}) without checking for a newer one`,
      });
      const hit = await cacheHit(known.sha256, requestUrl, 'none', ctx);
      if (hit !== undefined) return hit;
    }
  }
  return download(requestUrl, source, expected, ctx);
}

/**
 * Where Rocky Linux keeps a point release once a newer one ships: everything under
 * `/pub/rocky/<major.minor>/` moves to `/vault/rocky/<major.minor>/` on the same host, with the same
 * file names (https://dl.rockylinux.org/vault/rocky/). Undefined for any other URL. The rule is
 * about the path only, so it holds for mirrors with Rocky's layout too.
 */
export function rockyVaultUrl(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url.trim());
  } catch {
    return undefined;
  }
  if (!/^https?:$/.test(parsed.protocol) || !/^\/pub\/rocky\/\d+\.\d+\//.test(parsed.pathname)) return undefined;
  parsed.pathname = parsed.pathname.replace(/^\/pub\/rocky\//, '/vault/rocky/');
  return parsed.href;
}

async function resolveExpected(source: BaseImageSource, requestUrl: string, ctx: Context): Promise<Expected | undefined> {
  if (source.sha256 !== undefined) {
    const sha = source.sha256.trim().toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(sha)) throw new KibError('BAD_SHA256', `the expected sha256 ${JSON.stringify(source.sha256)} is not 64 hex digits`);
    return { sha256: sha, by: 'sha256' };
  }
  if (source.checksumUrl === undefined) return undefined;

  const fileName = fileNameOf(source.url);
  let text: string;
  try {
    text = await readChecksumFileOrVault(source.checksumUrl, ctx);
  } catch (error) {
    if (!(error instanceof NetworkError)) throw error;
    // Offline after `kib fetch`: the image fetched earlier from this URL is still the best answer.
    const known = await findStoredByUrl(ctx.cacheDir, requestUrl);
    if (known === undefined) throw error;
    ctx.reporter.emit({
      type: 'warning',
      message: `could not read the checksum file ${source.checksumUrl} (${error.message}); using the copy of ${requestUrl} verified against it on ${known.metadata.fetchedAt} (sha256 ${known.sha256})`,
    });
    return { sha256: known.sha256, by: 'checksum-file' };
  }
  const sha = findChecksum(text, fileName);
  if (sha === undefined) {
    const listed = [...parseChecksumFile(text).keys()];
    throw new KibError('CHECKSUM_NOT_LISTED', `the checksum file ${source.checksumUrl} lists no sha256 for ${fileName}`, {
      hint:
        listed.length === 0
          ? 'The file has no SHA-256 entries in GNU (hex  name) or BSD (SHA256 (name) = hex) format.'
          : `It lists: ${listed.slice(0, 8).join(', ')}${listed.length > 8 ? ', …' : ''}. Check base.url and base.checksumUrl.`,
    });
  }
  ctx.reporter.emit({ type: 'step', phase: 'base', message: `${source.checksumUrl} lists sha256 ${sha} for ${fileName}` });
  return { sha256: sha, by: 'checksum-file' };
}

/** The checksum file, from Rocky's vault when the point release has moved there. */
async function readChecksumFileOrVault(checksumUrl: string, ctx: Context): Promise<string> {
  try {
    return await readChecksumFile(checksumUrl, ctx);
  } catch (error) {
    const vault = error instanceof NetworkError && error.status === 404 ? rockyVaultUrl(checksumUrl) : undefined;
    if (vault === undefined) throw error;
    ctx.reporter.emit({ type: 'step', phase: 'base', message: `${checksumUrl} is gone (HTTP 404): Rocky moves superseded point releases to its vault; trying ${vault}` });
    return await readChecksumFile(vault, ctx);
  }
}

async function readChecksumFile(checksumUrl: string, ctx: Context): Promise<string> {
  if (!isHttpUrl(checksumUrl)) {
    const path = localPath(checksumUrl);
    try {
      return await readFile(path, 'utf8');
    } catch (error) {
      throw new KibError('CHECKSUM_NOT_FOUND', `cannot read the checksum file ${path}: ${(error as Error).message}`, { cause: error });
    }
  }
  const controller = new AbortController();
  const detach = linkSignal(ctx.signal, controller);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, ctx.connectTimeoutMs);
  try {
    let response: Response;
    try {
      response = await ctx.fetchImpl(checksumUrl, { headers: { 'user-agent': USER_AGENT }, signal: controller.signal });
    } catch (error) {
      throw unreachable(checksumUrl, error, timedOut, ctx);
    }
    if (!response.ok) {
      await response.body?.cancel().catch(() => {});
      throw new NetworkError(checksumUrl, `${checksumUrl} answered HTTP ${String(response.status)} ${response.statusText}`.trimEnd(), {
        hint: 'Check base.checksumUrl.',
        status: response.status,
      });
    }
    const bytes = new Uint8Array(await response.arrayBuffer());
    if (bytes.byteLength > MAX_CHECKSUM_FILE_BYTES) throw new KibError('CHECKSUM_TOO_LARGE', `${checksumUrl} is too large for a checksum file`);
    return new TextDecoder().decode(bytes);
  } catch (error) {
    if (ctx.signal?.aborted === true) throw new CancelledError('Fetching the checksum file');
    if (error instanceof KibError) throw error;
    throw unreachable(checksumUrl, error, timedOut, ctx);
  } finally {
    clearTimeout(timer);
    detach();
  }
}

async function cacheHit(sha256: string, requestUrl: string, verifiedBy: FetchedBaseImage['verifiedBy'], ctx: Context): Promise<FetchedBaseImage | undefined> {
  const sizeBytes = await storedImageSize(ctx.cacheDir, sha256);
  if (sizeBytes === undefined) return undefined;
  const path = storedImagePath(ctx.cacheDir, sha256);
  const format = await detectImageFormat(path, path);
  ctx.reporter.emit({ type: 'step', phase: 'base', message: `base image ${sha256.slice(0, 12)} is in the cache: ${path}` });
  return { path, sha256, url: requestUrl, sizeBytes, format, verifiedBy, fromCache: true };
}

async function importLocal(path: string, source: BaseImageSource, expected: Expected | undefined, ctx: Context): Promise<FetchedBaseImage> {
  const fileUrl = pathToFileURL(path).href;
  let info;
  try {
    info = await stat(path);
  } catch {
    throw new KibError('BASE_NOT_FOUND', `the base image ${path} does not exist`, { hint: 'Check base.url in the build definition, or the path given with --base.' });
  }
  if (!info.isFile()) throw new KibError('BASE_NOT_FOUND', `the base image ${path} is not a file`);
  // Checked before hashing so that a compressed download is refused at once, not after a full read.
  await detectImageFormat(path, path);

  const sha256 = await hashFile(path, info.size, `hash ${basename(path)}`, ctx);
  if (expected !== undefined && sha256 !== expected.sha256) throw new ChecksumMismatchError(fileUrl, expected.sha256, sha256);
  if (expected === undefined) {
    ctx.reporter.emit({
      type: 'warning',
      message: `the base image ${path} was not checked against a known sha256 (none was given); its sha256 is ${sha256}`,
    });
  }
  const verifiedBy = expected?.by ?? 'none';
  const hit = await cacheHit(sha256, fileUrl, verifiedBy, ctx);
  if (hit !== undefined) return hit;

  const temp = join(ctx.storeDir, `${sha256}.${randomBytes(6).toString('hex')}.partial`);
  try {
    const copied = await copyHashing(path, temp, info.size, `copy ${basename(path)}`, ctx);
    if (copied !== sha256) throw new KibError('BASE_CHANGED', `${path} changed while it was being copied into the cache (sha256 ${sha256}, then ${copied})`);
    return await commit(temp, sha256, fileUrl, source, verifiedBy, ctx);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/** Moves a verified temp file into the store as `<sha256>` and records where it came from. */
async function commit(
  temp: string,
  sha256: string,
  url: string,
  source: BaseImageSource,
  verifiedBy: FetchedBaseImage['verifiedBy'],
  ctx: Context,
): Promise<FetchedBaseImage> {
  const format = await detectImageFormat(temp, url);
  const finalPath = storedImagePath(ctx.cacheDir, sha256);
  const sizeBytes = (await stat(temp)).size;
  if ((await storedImageSize(ctx.cacheDir, sha256)) === undefined) {
    // The store is read-only by convention; the mode makes an accidental write fail loudly.
    await chmod(temp, 0o444);
    await rename(temp, finalPath);
  } else {
    await rm(temp, { force: true });
  }
  // Rewritten on every fetch, so a lookup by URL finds the most recent source of these bytes.
  await writeStoreMetadata(ctx.cacheDir, sha256, {
    url,
    sizeBytes,
    fetchedAt: new Date().toISOString(),
    source: { url: source.url, checksumUrl: source.checksumUrl ?? null, sha256: source.sha256 ?? null },
  });
  ctx.reporter.emit({ type: 'step', phase: 'base', message: `base image ${sha256.slice(0, 12)} stored in the cache: ${finalPath}` });
  return { path: finalPath, sha256, url, sizeBytes, format, verifiedBy, fromCache: false };
}

// --- downloads -------------------------------------------------------------------------------

/** A failure while bytes were flowing; worth resuming. */
class TransferError extends Error {}

interface Sidecar {
  url: string;
  etag: string | null;
  lastModified: string | null;
}

async function download(requestUrl: string, source: BaseImageSource, expected: Expected | undefined, ctx: Context): Promise<FetchedBaseImage> {
  let url = requestUrl;
  const key = expected?.sha256 ?? `url-${createHash('sha256').update(url).digest('hex').slice(0, 16)}`;
  const partial = join(ctx.storeDir, `${key}.partial`);
  const release = await acquireLock(`${partial}.lock`);
  try {
    ctx.reporter.emit({ type: 'step', phase: 'base', message: `downloading ${url}` });
    let result: { sha256: string; sizeBytes: number } | undefined;
    for (let attempt = 1; result === undefined; attempt += 1) {
      const progress = { received: 0 };
      try {
        result = await downloadOnce(url, partial, expected === undefined, progress, ctx);
      } catch (error) {
        if (ctx.signal?.aborted === true) throw new CancelledError('Downloading the base image');
        if (error instanceof NetworkError && error.status === 404 && url !== requestUrl) {
          throw new NetworkError(requestUrl, `${requestUrl} answered HTTP 404, and so did its copy in Rocky's vault, ${url}`, {
            status: 404,
            hint: 'Check base.url: the file name may be wrong, or the point release may be older than the vault keeps.',
            cause: error,
          });
        }
        const vault = error instanceof NetworkError && error.status === 404 && url === requestUrl ? rockyVaultUrl(url) : undefined;
        if (vault !== undefined) {
          // Same file name, same bytes: the sha256 check after the download is unchanged.
          ctx.reporter.emit({ type: 'step', phase: 'base', message: `${url} is gone (HTTP 404): Rocky moves superseded point releases to its vault; downloading ${vault}` });
          url = vault;
          attempt -= 1;
          continue;
        }
        if (!(error instanceof TransferError)) throw error;
        const kept = await fileSize(partial);
        if (progress.received === 0 || attempt >= ctx.maxAttempts) {
          throw new NetworkError(url, `downloading ${url} failed: ${error.message}; the ${formatMiB(kept)} downloaded so far are kept and the next run resumes from there`, {
            hint: OFFLINE_HINT,
            cause: error,
          });
        }
        ctx.reporter.emit({ type: 'step', phase: 'base', message: `download interrupted at ${formatMiB(kept)} (${error.message}); resuming` });
      }
    }
    if (expected !== undefined && result.sha256 !== expected.sha256) {
      await removePartial(partial);
      throw new ChecksumMismatchError(url, expected.sha256, result.sha256);
    }
    try {
      const image = await commit(partial, result.sha256, url, source, expected?.by ?? 'none', ctx);
      await rm(`${partial}.json`, { force: true });
      if (expected === undefined) {
        ctx.reporter.emit({ type: 'warning', message: `${url} was not checked against a known sha256 (none was given); its sha256 is ${result.sha256}` });
      }
      return image;
    } catch (error) {
      await removePartial(partial);
      throw error;
    }
  } finally {
    await release();
  }
}

/**
 * One HTTP request: resumes from the partial file if there is one (re-hashing what it holds),
 * appends what arrives, and returns the sha256 and size of the complete file.
 */
async function downloadOnce(
  url: string,
  partial: string,
  needsValidator: boolean,
  progress: { received: number },
  ctx: Context,
): Promise<{ sha256: string; sizeBytes: number }> {
  const name = fileNameOf(url);
  let offset = await fileSize(partial);
  const sidecar = await readSidecar(partial);
  const validator = sidecar?.url === url ? (sidecar.etag !== null && !sidecar.etag.startsWith('W/') ? sidecar.etag : sidecar.lastModified) : null;
  // Without a known sha256 only a validator tells us the partial is a prefix of the same file.
  if (offset > 0 && needsValidator && validator === null) {
    await truncate(partial, 0);
    offset = 0;
  }
  let hash = createHash('sha256');
  if (offset > 0) await hashPrefix(partial, offset, hash, `check partial ${name}`, ctx);

  const headers: Record<string, string> = { 'accept-encoding': 'identity', 'user-agent': USER_AGENT };
  if (offset > 0) {
    headers.range = `bytes=${String(offset)}-`;
    if (validator !== null) headers['if-range'] = validator;
  }

  const controller = new AbortController();
  const detach = linkSignal(ctx.signal, controller);
  let timedOut: 'connect' | 'stall' | undefined;
  let timer = setTimeout(() => {
    timedOut = 'connect';
    controller.abort();
  }, ctx.connectTimeoutMs);
  let handle: FileHandle | undefined;
  try {
    let response: Response;
    try {
      response = await ctx.fetchImpl(url, { headers, signal: controller.signal, redirect: 'follow' });
    } catch (error) {
      if (ctx.signal?.aborted === true) throw new CancelledError('Downloading the base image');
      throw unreachable(url, error, timedOut === 'connect', ctx);
    }
    clearTimeout(timer);

    let total: number | undefined;
    if (offset > 0 && response.status === 206) {
      const range = parseContentRange(response.headers.get('content-range'));
      if (range?.start !== offset) {
        // Not the bytes we asked for: start over without a range rather than splice wrong data.
        await response.body?.cancel().catch(() => {});
        await truncate(partial, 0);
        return await downloadOnce(url, partial, needsValidator, progress, ctx);
      }
      total = range.total;
    } else if (response.status === 200) {
      if (offset > 0) {
        ctx.reporter.emit({ type: 'step', phase: 'base', message: `${new URL(url).host} ignored the range request; downloading ${name} from the start` });
        offset = 0;
        hash = createHash('sha256');
      }
      total = contentLength(response);
    } else if (offset > 0 && response.status === 416) {
      await response.body?.cancel().catch(() => {});
      const complete = /^bytes \*\/(\d+)$/.exec(response.headers.get('content-range') ?? '');
      if (complete !== null && Number(complete[1]) === offset) return { sha256: hash.digest('hex'), sizeBytes: offset };
      await truncate(partial, 0);
      return await downloadOnce(url, partial, needsValidator, progress, ctx);
    } else {
      await response.body?.cancel().catch(() => {});
      throw new NetworkError(url, `${url} answered HTTP ${String(response.status)} ${response.statusText}`.trimEnd(), {
        status: response.status,
        hint:
          response.status === 404 || response.status === 410
            ? 'Check base.url. Distributions move superseded point releases to an archive (Rocky Linux: https://dl.rockylinux.org/vault/rocky/).'
            : OFFLINE_HINT,
      });
    }
    if (response.body === null) throw new TransferError('the response has no body');

    if (offset === 0) await writeSidecar(partial, { url, etag: response.headers.get('etag'), lastModified: response.headers.get('last-modified') });
    handle = await open(partial, offset === 0 ? 'w' : 'a');
    let done = offset;
    const label = `download ${name}`;
    let lastEmit = 0;
    const emit = (force: boolean): void => {
      const now = Date.now();
      if (!force && now - lastEmit < PROGRESS_INTERVAL_MS) return;
      lastEmit = now;
      ctx.reporter.emit({ type: 'progress', phase: 'base', label, done, total, unit: 'bytes' });
    };
    const armStallTimer = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        timedOut = 'stall';
        controller.abort();
      }, ctx.stallTimeoutMs);
    };
    emit(true);
    armStallTimer();
    try {
      for await (const chunk of response.body) {
        await writeAll(handle, chunk);
        hash.update(chunk);
        done += chunk.byteLength;
        progress.received += chunk.byteLength;
        armStallTimer();
        emit(false);
      }
    } catch (error) {
      if (ctx.signal?.aborted === true) throw new CancelledError('Downloading the base image');
      const reason = timedOut === 'stall' ? `no data for ${String(Math.round(ctx.stallTimeoutMs / 1000))} s` : describeFetchError(error);
      throw new TransferError(reason, { cause: error });
    }
    if (total !== undefined && done !== total) {
      throw new TransferError(`the connection closed after ${String(done)} of ${String(total)} bytes`);
    }
    emit(true);
    return { sha256: hash.digest('hex'), sizeBytes: done };
  } finally {
    clearTimeout(timer);
    detach();
    await handle?.close();
  }
}

function parseContentRange(header: string | null): { start: number; total: number | undefined } | undefined {
  const match = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header?.trim() ?? '');
  if (match === null) return undefined;
  return { start: Number(match[1]), total: match[3] === '*' ? undefined : Number(match[3]) };
}

function contentLength(response: Response): number | undefined {
  const header = response.headers.get('content-length');
  if (header === null || !/^\d+$/.test(header.trim())) return undefined;
  return Number(header);
}

async function readSidecar(partial: string): Promise<Sidecar | undefined> {
  try {
    return JSON.parse(await readFile(`${partial}.json`, 'utf8')) as Sidecar;
  } catch {
    return undefined;
  }
}

async function writeSidecar(partial: string, sidecar: Sidecar): Promise<void> {
  await writeFileAtomic(`${partial}.json`, `${JSON.stringify(sidecar)}\n`);
}

async function removePartial(partial: string): Promise<void> {
  await rm(partial, { force: true });
  await rm(`${partial}.json`, { force: true });
}

/** One download per store entry at a time, also across processes. */
async function acquireLock(lockPath: string): Promise<() => Promise<void>> {
  for (let attempt = 0; attempt < 2; attempt += 1) {
    try {
      const handle = await open(lockPath, 'wx');
      try {
        await handle.writeFile(String(process.pid));
      } finally {
        await handle.close();
      }
      return async () => {
        await rm(lockPath, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const pid = Number((await readFile(lockPath, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) {
        throw new KibError('BASE_BUSY', `another kib process (pid ${String(pid)}) is downloading this base image (${lockPath})`, {
          hint: 'Wait for it to finish and run again; its download will then be used.',
        });
      }
      // The process that held it is gone (killed mid-download); its partial file is resumable.
      await rm(lockPath, { force: true });
    }
  }
  throw new KibError('BASE_BUSY', `cannot take the download lock ${lockPath}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// --- helpers ---------------------------------------------------------------------------------

function isHttpUrl(location: string): boolean {
  return /^https?:\/\//i.test(location.trim());
}

function localPath(location: string): string {
  const text = location.trim();
  return /^file:/i.test(text) ? fileURLToPath(text) : resolve(text);
}

function fileNameOf(location: string): string {
  if (isHttpUrl(location)) {
    const last = new URL(location.trim()).pathname.split('/').pop() ?? '';
    return decodeURIComponent(last);
  }
  return basename(localPath(location));
}

function linkSignal(signal: AbortSignal | undefined, controller: AbortController): () => void {
  if (signal === undefined) return () => {};
  if (signal.aborted) controller.abort();
  const onAbort = (): void => controller.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  return () => signal.removeEventListener('abort', onAbort);
}

function checkCancelled(ctx: Context): void {
  if (ctx.signal?.aborted === true) throw new CancelledError('Fetching the base image');
}

function unreachable(url: string, error: unknown, timedOut: boolean, ctx: Context): NetworkError {
  const reason = timedOut ? `no response within ${String(Math.round(ctx.connectTimeoutMs / 1000))} s` : describeFetchError(error);
  return new NetworkError(url, `could not reach ${url}: ${reason}`, { hint: OFFLINE_HINT, cause: error });
}


async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

async function writeAll(handle: FileHandle, chunk: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < chunk.byteLength) {
    const { bytesWritten } = await handle.write(chunk, offset, chunk.byteLength - offset);
    offset += bytesWritten;
  }
}

async function hashPrefix(path: string, length: number, hash: Hash, label: string, ctx: Context): Promise<void> {
  await streamFile(path, length, label, ctx, (chunk) => {
    hash.update(chunk);
  });
}

async function hashFile(path: string, size: number, label: string, ctx: Context): Promise<string> {
  const hash = createHash('sha256');
  await streamFile(path, size, label, ctx, (chunk) => {
    hash.update(chunk);
  });
  return hash.digest('hex');
}

async function copyHashing(from: string, to: string, size: number, label: string, ctx: Context): Promise<string> {
  const hash = createHash('sha256');
  const handle = await open(to, 'wx');
  try {
    await streamFile(from, size, label, ctx, async (chunk) => {
      hash.update(chunk);
      await writeAll(handle, chunk);
    });
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

/** Reads the first `length` bytes of a file in chunks, with progress events and cancellation. */
async function streamFile(
  path: string,
  length: number,
  label: string,
  ctx: Context,
  onChunk: (chunk: Buffer) => void | Promise<void>,
): Promise<void> {
  if (length === 0) return;
  const stream = createReadStream(path, { start: 0, end: length - 1, highWaterMark: 1024 * 1024 });
  let done = 0;
  let lastEmit = 0;
  ctx.reporter.emit({ type: 'progress', phase: 'base', label, done, total: length, unit: 'bytes' });
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      checkCancelled(ctx);
      await onChunk(chunk);
      done += chunk.length;
      const now = Date.now();
      if (now - lastEmit >= PROGRESS_INTERVAL_MS || done === length) {
        lastEmit = now;
        ctx.reporter.emit({ type: 'progress', phase: 'base', label, done, total: length, unit: 'bytes' });
      }
    }
  } finally {
    stream.destroy();
  }
}

function formatMiB(bytes: number): string {
  return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
}
