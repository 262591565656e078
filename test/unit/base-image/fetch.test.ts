import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fetchBaseImage, type FetchBaseImageOptions, rockyVaultUrl } from '../../../src/base-image/fetch.js';
import { baseStoreDir } from '../../../src/base-image/store.js';
import { CancelledError, ChecksumMismatchError, KibError, NetworkError } from '../../../src/core/errors.js';
import type { KibEvent } from '../../../src/report/events.js';
import { closedPort, ImageServer, makeImage } from './image-server.js';

const IMAGE_PATH = '/pub/rocky/9.8/images/x86_64/Rocky-9-GenericCloud-Base-9.8-20260525.0.x86_64.qcow2';
const SIZE = 3 * 1024 * 1024 + 123;

let server: ImageServer;
let cacheDir: string;
let workDir: string;
let image: { data: Buffer; sha256: string };
let events: KibEvent[];

beforeEach(async () => {
  server = await ImageServer.start();
  cacheDir = await mkdtemp(join(tmpdir(), 'kib-cache-'));
  workDir = await mkdtemp(join(tmpdir(), 'kib-work-'));
  image = makeImage(SIZE);
  server.serve(IMAGE_PATH, image.data);
  events = [];
});

afterEach(async () => {
  await server.close();
  await rm(cacheDir, { recursive: true, force: true });
  await rm(workDir, { recursive: true, force: true });
});

function options(extra: Partial<FetchBaseImageOptions> = {}): FetchBaseImageOptions {
  return { cacheDir, reporter: { emit: (event) => events.push(event) }, ...extra };
}

/** Every file in the store directory, sorted. */
async function storeContents(): Promise<string[]> {
  try {
    return (await readdir(baseStoreDir(cacheDir))).sort();
  } catch {
    return [];
  }
}

const noNetwork: typeof fetch = () => Promise.reject(new Error('the network must not be used here'));

describe('download', () => {
  it('streams into the content-addressed store with progress and metadata', async () => {
    const url = server.url(IMAGE_PATH);
    const result = await fetchBaseImage({ url, sha256: image.sha256 }, options());

    const path = join(baseStoreDir(cacheDir), image.sha256);
    expect(result).toEqual({ path, sha256: image.sha256, url, sizeBytes: SIZE, format: 'qcow2', verifiedBy: 'sha256', fromCache: false });
    expect(Buffer.compare(await readFile(path), image.data)).toBe(0);
    expect((await stat(path)).mode & 0o222).toBe(0);
    expect(await storeContents()).toEqual([image.sha256, `${image.sha256}.json`]);
    const metadata = JSON.parse(await readFile(`${path}.json`, 'utf8')) as Record<string, unknown>;
    expect(metadata).toMatchObject({ url, sizeBytes: SIZE, source: { url, checksumUrl: null, sha256: image.sha256 } });
    expect(Number.isNaN(Date.parse(metadata.fetchedAt as string))).toBe(false);

    const progress = events.filter((event) => event.type === 'progress');
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect(progress.at(-1)).toMatchObject({ phase: 'base', done: SIZE, total: SIZE, unit: 'bytes' });
    expect(server.seen).toEqual([{ path: IMAGE_PATH, range: undefined, status: 200 }]);
  });

  it('verifies against the checksum file (BSD format, clear-signed) when no sha256 is pinned', async () => {
    const name = IMAGE_PATH.split('/').pop() ?? '';
    server.serve(
      '/pub/rocky/9.8/images/x86_64/CHECKSUM',
      `-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n# ${name}: ${String(SIZE)} bytes\nSHA256 (${name}) = ${image.sha256}\n-----BEGIN PGP SIGNATURE-----\n\nxyz\n-----END PGP SIGNATURE-----\n`,
    );
    const result = await fetchBaseImage({ url: server.url(IMAGE_PATH), checksumUrl: server.url('/pub/rocky/9.8/images/x86_64/CHECKSUM') }, options());
    expect(result).toMatchObject({ sha256: image.sha256, verifiedBy: 'checksum-file', fromCache: false });
  });

  it('says which names the checksum file lists when the image is not among them', async () => {
    server.serve('/SUMS', `${'0'.repeat(64)}  something-else.qcow2\n`);
    const error = await fetchBaseImage({ url: server.url(IMAGE_PATH), checksumUrl: server.url('/SUMS') }, options()).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(KibError);
    expect((error as KibError).code).toBe('CHECKSUM_NOT_LISTED');
    expect((error as KibError).hint).toContain('something-else.qcow2');
  });

  it('reports an HTTP error status with the URL', async () => {
    const url = server.url('/pub/rocky/9.7/missing.qcow2');
    const error = await fetchBaseImage({ url, sha256: image.sha256 }, options()).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(NetworkError);
    expect((error as NetworkError).url).toBe(url);
    expect((error as NetworkError).message).toContain('answered HTTP 404');
    expect(await storeContents()).toEqual([]);
  });
});

describe('the cache', () => {
  it('serves a known sha256 without any network access', async () => {
    await fetchBaseImage({ url: server.url(IMAGE_PATH), sha256: image.sha256 }, options());
    await server.close();
    server = await ImageServer.start();
    const again = await fetchBaseImage({ url: 'https://unreachable.invalid/base.qcow2', sha256: image.sha256 }, options({ fetchImpl: noNetwork }));
    expect(again).toMatchObject({ sha256: image.sha256, fromCache: true, verifiedBy: 'sha256', sizeBytes: SIZE, format: 'qcow2' });
    expect(again.path).toBe(join(baseStoreDir(cacheDir), image.sha256));
  });

  it('falls back to the copy fetched earlier from the same URL when the checksum file is unreachable', async () => {
    const name = IMAGE_PATH.split('/').pop() ?? '';
    server.serve('/CHECKSUM', `SHA256 (${name}) = ${image.sha256}\n`);
    const source = { url: server.url(IMAGE_PATH), checksumUrl: server.url('/CHECKSUM') };
    await fetchBaseImage(source, options());
    events = [];
    const offline = await fetchBaseImage(source, options({ fetchImpl: () => Promise.reject(new TypeError('fetch failed')) }));
    expect(offline).toMatchObject({ sha256: image.sha256, fromCache: true, verifiedBy: 'checksum-file' });
    expect(events).toContainEqual({ type: 'warning', message: expect.stringContaining('could not read the checksum file') as unknown });
  });
});

describe('interrupted downloads', () => {
  it('resume with a Range request after the server drops the connection halfway', async () => {
    server.behaviour = 'cut-first';
    const result = await fetchBaseImage({ url: server.url(IMAGE_PATH), sha256: image.sha256 }, options());
    expect(result.sha256).toBe(image.sha256);
    expect(Buffer.compare(await readFile(result.path), image.data)).toBe(0);
    expect(server.seen).toHaveLength(2);
    expect(server.seen[0]).toEqual({ path: IMAGE_PATH, range: undefined, status: 200 });
    const resumedFrom = Number(/^bytes=(\d+)-$/.exec(server.seen[1]?.range ?? '')?.[1]);
    expect(resumedFrom).toBeGreaterThan(0);
    expect(resumedFrom).toBeLessThan(SIZE);
    expect(server.seen[1]?.status).toBe(206);
    expect(events).toContainEqual({ type: 'step', phase: 'base', message: expect.stringContaining('resuming') as unknown });
    expect(await storeContents()).toEqual([image.sha256, `${image.sha256}.json`]);
  });

  it('keep the partial file when attempts run out, and a later run resumes it', async () => {
    server.behaviour = 'cut-always';
    const source = { url: server.url(IMAGE_PATH), sha256: image.sha256 };
    const error = await fetchBaseImage(source, options({ maxAttempts: 1 })).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(NetworkError);
    expect((error as NetworkError).message).toContain('the next run resumes from there');
    const partial = join(baseStoreDir(cacheDir), `${image.sha256}.partial`);
    const kept = (await stat(partial)).size;
    expect(kept).toBeGreaterThan(0);
    expect(await storeContents()).not.toContain(image.sha256);

    server.behaviour = 'normal';
    const result = await fetchBaseImage(source, options());
    expect(result.sha256).toBe(image.sha256);
    expect(server.seen.at(-1)).toEqual({ path: IMAGE_PATH, range: `bytes=${String(kept)}-`, status: 206 });
    expect(await storeContents()).toEqual([image.sha256, `${image.sha256}.json`]);
  });

  it('start over when the server ignores the Range request', async () => {
    server.behaviour = 'cut-always';
    const source = { url: server.url(IMAGE_PATH), sha256: image.sha256 };
    await fetchBaseImage(source, options({ maxAttempts: 1 })).catch(() => undefined);
    server.behaviour = 'ignore-range';
    const result = await fetchBaseImage(source, options());
    expect(Buffer.compare(await readFile(result.path), image.data)).toBe(0);
    const last = server.seen.at(-1);
    expect(last?.range).toMatch(/^bytes=\d+-$/);
    expect(last?.status).toBe(200);
    expect(events).toContainEqual({ type: 'step', phase: 'base', message: expect.stringContaining('ignored the range request') as unknown });
  });
});

describe('verification', () => {
  it('a mismatch throws and leaves neither an entry nor a partial file', async () => {
    const wrong = createHash('sha256').update('something else').digest('hex');
    const url = server.url(IMAGE_PATH);
    const error = await fetchBaseImage({ url, sha256: wrong }, options()).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ChecksumMismatchError);
    expect(error).toMatchObject({ url, expected: wrong, actual: image.sha256 });
    expect(await storeContents()).toEqual([]);
  });
});

describe('unreachable URLs', () => {
  it('fail fast with a NetworkError naming the URL and saying how to build offline', async () => {
    const url = `http://127.0.0.1:${String(await closedPort())}/base.qcow2`;
    const started = Date.now();
    const error = await fetchBaseImage({ url, sha256: image.sha256 }, options()).catch((caught: unknown) => caught);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(error).toBeInstanceOf(NetworkError);
    expect((error as NetworkError).url).toBe(url);
    expect((error as NetworkError).message).toContain(`could not reach ${url}: `);
    expect((error as NetworkError).message).toContain('ECONNREFUSED');
    expect((error as NetworkError).hint).toContain('--base PATH');
    expect((error as NetworkError).hint).toContain('kib fetch');
    expect(await storeContents()).toEqual([]);
  });
});

describe('cancellation', () => {
  it('keeps the partial download for later but never creates an entry', async () => {
    server.behaviour = 'slow';
    const controller = new AbortController();
    const source = { url: server.url(IMAGE_PATH), sha256: image.sha256 };
    const reporter = {
      emit(event: KibEvent): void {
        if (event.type === 'progress' && event.done > 256 * 1024) controller.abort();
      },
    };
    const error = await fetchBaseImage(source, { cacheDir, signal: controller.signal, reporter }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(CancelledError);
    const contents = await storeContents();
    expect(contents).not.toContain(image.sha256);
    expect(contents).toContain(`${image.sha256}.partial`);
    expect(contents).not.toContain(`${image.sha256}.partial.lock`);

    server.behaviour = 'normal';
    const result = await fetchBaseImage(source, options());
    expect(result.sha256).toBe(image.sha256);
    expect(server.seen.at(-1)?.status).toBe(206);
  });

  it('does nothing when the signal has already fired', async () => {
    const controller = new AbortController();
    controller.abort();
    const error = await fetchBaseImage({ url: server.url(IMAGE_PATH) }, options({ signal: controller.signal })).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(CancelledError);
    expect(server.seen).toEqual([]);
  });
});

describe('local bases', () => {
  it('are hashed in place and copied into the store, by path or file URL', async () => {
    const path = join(workDir, 'rocky.qcow2');
    await writeFile(path, image.data);
    const byPath = await fetchBaseImage({ url: path, sha256: image.sha256 }, options({ fetchImpl: noNetwork }));
    expect(byPath).toMatchObject({ sha256: image.sha256, url: pathToFileURL(path).href, sizeBytes: SIZE, format: 'qcow2', verifiedBy: 'sha256', fromCache: false });
    expect(byPath.path).toBe(join(baseStoreDir(cacheDir), image.sha256));
    expect(Buffer.compare(await readFile(byPath.path), image.data)).toBe(0);
    expect(await storeContents()).toEqual([image.sha256, `${image.sha256}.json`]);

    const byUrl = await fetchBaseImage({ url: pathToFileURL(path).href, sha256: image.sha256 }, options({ fetchImpl: noNetwork }));
    expect(byUrl).toMatchObject({ path: byPath.path, fromCache: true });
  });

  it('are accepted without a sha256, with a warning that records theirs', async () => {
    const path = join(workDir, 'disk.img');
    const raw = Buffer.alloc(64 * 1024, 7);
    await writeFile(path, raw);
    const result = await fetchBaseImage({ url: path }, options());
    const sha = createHash('sha256').update(raw).digest('hex');
    expect(result).toMatchObject({ sha256: sha, format: 'raw', verifiedBy: 'none' });
    expect(events).toContainEqual({ type: 'warning', message: expect.stringContaining(`its sha256 is ${sha}`) as unknown });
  });

  it('that do not match the pinned sha256 are not stored', async () => {
    const path = join(workDir, 'rocky.qcow2');
    await writeFile(path, image.data);
    const error = await fetchBaseImage({ url: path, sha256: 'f'.repeat(64) }, options()).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ChecksumMismatchError);
    expect(await storeContents()).toEqual([]);
  });

  it('that are compressed are refused with a hint', async () => {
    const path = join(workDir, 'rocky.qcow2.xz');
    await writeFile(path, Buffer.concat([Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), Buffer.alloc(100)]));
    const error = await fetchBaseImage({ url: path }, options()).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'BASE_FORMAT' });
    expect((error as KibError).message).toContain('xz-compressed');
  });

  it('that do not exist are reported by path', async () => {
    const path = join(workDir, 'missing.qcow2');
    const error = await fetchBaseImage({ url: path }, options()).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'BASE_NOT_FOUND' });
    expect((error as KibError).message).toContain(path);
  });
});

describe("Rocky's vault", () => {
  it('maps a point release under /pub/rocky/ to /vault/rocky/ on the same origin, and nothing else', () => {
    expect(rockyVaultUrl('https://dl.rockylinux.org/pub/rocky/9.8/images/x86_64/Rocky-9-GenericCloud-Base-9.8-20260525.0.x86_64.qcow2')).toBe(
      'https://dl.rockylinux.org/vault/rocky/9.8/images/x86_64/Rocky-9-GenericCloud-Base-9.8-20260525.0.x86_64.qcow2',
    );
    expect(rockyVaultUrl('https://dl.rockylinux.org/pub/rocky/9.8/images/x86_64/CHECKSUM')).toBe('https://dl.rockylinux.org/vault/rocky/9.8/images/x86_64/CHECKSUM');
    expect(rockyVaultUrl('http://127.0.0.1:8080/pub/rocky/9.7/a.qcow2')).toBe('http://127.0.0.1:8080/vault/rocky/9.7/a.qcow2');
    // The moving major-version link is never archived, and other paths and schemes are not Rocky's layout.
    expect(rockyVaultUrl('https://dl.rockylinux.org/pub/rocky/9/images/x86_64/a.qcow2')).toBeUndefined();
    expect(rockyVaultUrl('https://dl.rockylinux.org/vault/rocky/9.8/a.qcow2')).toBeUndefined();
    expect(rockyVaultUrl('https://example.org/pub/debian/12/a.qcow2')).toBeUndefined();
    expect(rockyVaultUrl('file:///pub/rocky/9.8/a.qcow2')).toBeUndefined();
    expect(rockyVaultUrl('/pub/rocky/9.8/a.qcow2')).toBeUndefined();
  });

  it('fetches the image and the checksum file from the vault when the point release has moved there', async () => {
    const vaultPath = IMAGE_PATH.replace('/pub/rocky/', '/vault/rocky/');
    const name = IMAGE_PATH.split('/').pop() ?? '';
    await server.close();
    server = await ImageServer.start();
    // Only the vault has the files now, as after Rocky 9.9 ships.
    server.serve(vaultPath, image.data);
    server.serve('/vault/rocky/9.8/images/x86_64/CHECKSUM', `SHA256 (${name}) = ${image.sha256}\n`);
    const result = await fetchBaseImage({ url: server.url(IMAGE_PATH), checksumUrl: server.url('/pub/rocky/9.8/images/x86_64/CHECKSUM') }, options());
    expect(result).toMatchObject({ sha256: image.sha256, verifiedBy: 'checksum-file', fromCache: false, url: server.url(vaultPath) });
    expect(server.seen.map((request) => [request.path, request.status])).toEqual([
      ['/pub/rocky/9.8/images/x86_64/CHECKSUM', 404],
      ['/vault/rocky/9.8/images/x86_64/CHECKSUM', 200],
      [IMAGE_PATH, 404],
      [vaultPath, 200],
    ]);
    const steps = events.filter((event) => event.type === 'step').map((event) => (event as { message: string }).message);
    expect(steps).toContainEqual(expect.stringContaining(`trying ${server.url('/vault/rocky/9.8/images/x86_64/CHECKSUM')}`));
    expect(steps).toContainEqual(expect.stringContaining(`downloading ${server.url(vaultPath)}`));
    // A lookup by the configured URL still finds the stored copy.
    const again = await fetchBaseImage({ url: server.url(IMAGE_PATH), sha256: image.sha256 }, options({ fetchImpl: noNetwork }));
    expect(again.fromCache).toBe(true);
  });

  it('still verifies the sha256 of what the vault sends', async () => {
    const vaultPath = IMAGE_PATH.replace('/pub/rocky/', '/vault/rocky/');
    await server.close();
    server = await ImageServer.start();
    server.serve(vaultPath, makeImage(SIZE).data);
    const error = await fetchBaseImage({ url: server.url(IMAGE_PATH), sha256: image.sha256 }, options()).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ChecksumMismatchError);
    expect(await storeContents()).toEqual([]);
  });

  it('reports the vault URL when the file is in neither place', async () => {
    await server.close();
    server = await ImageServer.start();
    const error = await fetchBaseImage({ url: server.url(IMAGE_PATH), sha256: image.sha256 }, options()).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(NetworkError);
    expect((error as NetworkError).url).toBe(server.url(IMAGE_PATH));
    expect((error as NetworkError).message).toContain(`and so did its copy in Rocky's vault, ${server.url(IMAGE_PATH.replace('/pub/rocky/', '/vault/rocky/'))}`);
    expect((error as NetworkError).status).toBe(404);
    expect(server.seen.map((request) => request.status)).toEqual([404, 404]);
  });
});
