import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { request, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KibError } from '../../../src/core/errors.js';
import { decodeRequestPath, startArtifactServer, type StartedArtifactServer } from '../../../src/serve/artifact-server.js';
import {
  countOpenFds,
  httpRequest,
  randomData,
  rawRequest,
  recordingReporter,
  sha256,
  waitForFdCount,
  writeArtifactDir,
} from './helpers.js';

const STEM = 'rocky-9-kube-1.36.1';
const SECRET = 'TOP-SECRET-OUTSIDE-THE-SERVED-DIRECTORY';

let root: string;
let out: string;
let server: StartedArtifactServer;
const reporter = recordingReporter();
const qcow2 = randomData(300_000);
const raw = randomData(70_000);
const tarball = randomData(4096);
let sums: Record<string, string>;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'kib-serve-'));
  out = join(root, 'output');
  await mkdir(out);
  await writeFile(join(root, 'secret.txt'), SECRET);
  sums = await writeArtifactDir(out, STEM, {
    [`${STEM}.qcow2`]: qcow2,
    [`${STEM}.raw`]: raw,
    [`${STEM}.containerdisk.tar`]: tarball,
    'empty.img': Buffer.alloc(0),
  });
  const stemDir = join(out, STEM);
  // Present in the directory but not finished or not allowed: none of these may be served.
  await writeFile(join(stemDir, `${STEM}.qcow2.part`), 'half-written');
  await writeFile(join(stemDir, '.hidden'), 'dotfile');
  await symlink(join(root, 'secret.txt'), join(stemDir, 'escape.qcow2'));
  await symlink(`${STEM}.qcow2`, join(stemDir, 'alias.qcow2'));
  await writeFile(
    join(stemDir, 'SHA256SUMS'),
    `${sha256(qcow2)}  ${STEM}.qcow2\n${sha256(raw)}  ${STEM}.raw\n${sha256(tarball)}  ${STEM}.containerdisk.tar\n` +
      `${sha256('')}  empty.img\n${sha256(SECRET)}  escape.qcow2\n${sha256(qcow2)}  alias.qcow2\n${sha256('dotfile')}  .hidden\n`,
  );
  await writeArtifactDir(out, '.staging-0123', { 'staged.qcow2': 'staged' });
  await mkdir(join(out, 'unfinished'));
  await writeFile(join(out, 'unfinished', 'unfinished.qcow2'), 'no sums yet');
  await writeArtifactDir(root, 'outside', { 'outside.qcow2': 'outside data' });
  await symlink(join(root, 'outside'), join(out, 'linked-outside'));
  server = await startArtifactServer({ dir: out, reporter });
});

afterAll(async () => {
  await server.close();
  await rm(root, { recursive: true, force: true });
});

const qcow2Path = `/${STEM}/${STEM}.qcow2`;

describe('GET and HEAD', () => {
  it('serves a whole artifact with the headers CDI looks for', async () => {
    const res = await httpRequest(server.url, qcow2Path);
    expect(res.status).toBe(200);
    expect(res.body.equals(qcow2)).toBe(true);
    expect(res.headers['content-length']).toBe(String(qcow2.length));
    expect(res.headers['accept-ranges']).toBe('bytes');
    expect(res.headers['content-type']).toBe('application/octet-stream');
    expect(res.headers.etag).toBe(`"sha256:${sums[`${STEM}.qcow2`]}"`);
    expect(Date.parse(res.headers['last-modified'] ?? '')).not.toBeNaN();
  });

  it('answers HEAD with the same headers and no body', async () => {
    const res = await httpRequest(server.url, qcow2Path, { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(res.body.length).toBe(0);
    expect(res.headers['content-length']).toBe(String(qcow2.length));
    expect(res.headers['accept-ranges']).toBe('bytes');
    expect(res.headers.etag).toBe(`"sha256:${sha256(qcow2)}"`);
  });

  it('serves an empty artifact', async () => {
    const res = await httpRequest(server.url, `/${STEM}/empty.img`);
    expect(res.status).toBe(200);
    expect(res.headers['content-length']).toBe('0');
    expect(res.body.length).toBe(0);
  });

  it('serves SHA256SUMS and the unlisted companions with digests computed at startup', async () => {
    const sumsRes = await httpRequest(server.url, `/${STEM}/SHA256SUMS`);
    expect(sumsRes.status).toBe(200);
    expect(sumsRes.body.toString()).toContain(`${sha256(qcow2)}  ${STEM}.qcow2`);
    expect(sumsRes.headers.etag).toBe(`"sha256:${sha256(sumsRes.body)}"`);
    const manifest = await httpRequest(server.url, `/${STEM}/manifest.json`);
    expect(manifest.status).toBe(200);
    expect(manifest.headers['content-type']).toBe('application/json');
    expect(manifest.headers.etag).toBe(`"sha256:${sha256(manifest.body)}"`);
    const sbom = await httpRequest(server.url, `/${STEM}/sbom.cdx.json`);
    expect(sbom.status).toBe(200);
  });

  it('serves a symlink that stays inside the directory', async () => {
    const res = await httpRequest(server.url, `/${STEM}/alias.qcow2`);
    expect(res.status).toBe(200);
    expect(res.body.equals(qcow2)).toBe(true);
  });

  it('lists exactly the finished artifacts at /', async () => {
    const res = await httpRequest(server.url, '/');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    const paths = res.body
      .toString()
      .split('\n')
      .filter((line) => line !== '' && !line.startsWith('#'))
      .map((line) => line.split(/\s+/)[2]);
    expect(paths.sort()).toEqual(
      [
        `/${STEM}/${STEM}.containerdisk.tar`,
        `/${STEM}/${STEM}.qcow2`,
        `/${STEM}/${STEM}.raw`,
        `/${STEM}/SHA256SUMS`,
        `/${STEM}/alias.qcow2`,
        `/${STEM}/empty.img`,
        `/${STEM}/manifest.json`,
        `/${STEM}/sbom.cdx.json`,
      ].sort(),
    );
    expect(res.body.toString()).toContain(`${sha256(raw)}  ${raw.length}  /${STEM}/${STEM}.raw`);
  });
});

describe('byte ranges', () => {
  const size = qcow2.length;

  it.each([
    ['bytes=0-99', 0, 99],
    ['bytes=1000-', 1000, size - 1],
    ['bytes=-500', size - 500, size - 1],
    ['bytes=299990-400000', 299_990, size - 1],
    ['bytes=12345-12345', 12_345, 12_345],
  ])('%s gives 206 with the right bytes', async (range, start, end) => {
    const res = await httpRequest(server.url, qcow2Path, { headers: { Range: range } });
    expect(res.status).toBe(206);
    expect(res.headers['content-range']).toBe(`bytes ${start}-${end}/${size}`);
    expect(res.headers['content-length']).toBe(String(end - start + 1));
    expect(res.body.equals(qcow2.subarray(start, end + 1))).toBe(true);
  });

  it.each([['bytes=300000-'], ['bytes=999999-1000000'], ['bytes=-0']])('%s gives 416 with the size', async (range) => {
    const res = await httpRequest(server.url, qcow2Path, { headers: { Range: range } });
    expect(res.status).toBe(416);
    expect(res.headers['content-range']).toBe(`bytes */${size}`);
    expect(res.body.length).toBe(0);
  });

  it('answers a multi-range request with the whole file', async () => {
    const res = await httpRequest(server.url, qcow2Path, { headers: { Range: 'bytes=0-9,20-29' } });
    expect(res.status).toBe(200);
    expect(res.body.equals(qcow2)).toBe(true);
  });

  it('ignores a malformed Range header', async () => {
    const res = await httpRequest(server.url, qcow2Path, { headers: { Range: 'bytes=nonsense' } });
    expect(res.status).toBe(200);
    expect(res.body.length).toBe(size);
  });

  it('ignores Range on HEAD', async () => {
    const res = await httpRequest(server.url, qcow2Path, { method: 'HEAD', headers: { Range: 'bytes=0-9' } });
    expect(res.status).toBe(200);
    expect(res.headers['content-length']).toBe(String(size));
  });

  it('honours If-Range only while the validator matches', async () => {
    const head = await httpRequest(server.url, qcow2Path, { method: 'HEAD' });
    const etag = head.headers.etag ?? '';
    const lastModified = head.headers['last-modified'] ?? '';
    const byTag = await httpRequest(server.url, qcow2Path, { headers: { Range: 'bytes=0-9', 'If-Range': etag } });
    expect(byTag.status).toBe(206);
    const byDate = await httpRequest(server.url, qcow2Path, { headers: { Range: 'bytes=0-9', 'If-Range': lastModified } });
    expect(byDate.status).toBe(206);
    const stale = await httpRequest(server.url, qcow2Path, { headers: { Range: 'bytes=0-9', 'If-Range': '"sha256:0000"' } });
    expect(stale.status).toBe(200);
    expect(stale.body.length).toBe(size);
    const oldDate = await httpRequest(server.url, qcow2Path, {
      headers: { Range: 'bytes=0-9', 'If-Range': new Date(Date.parse(lastModified) - 60_000).toUTCString() },
    });
    expect(oldDate.status).toBe(200);
  });
});

describe('conditional requests', () => {
  it('answers a matching If-None-Match with 304 and the validators', async () => {
    const etag = `"sha256:${sha256(qcow2)}"`;
    for (const value of [etag, `"nope", ${etag}`, `W/${etag}`, '*']) {
      const res = await httpRequest(server.url, qcow2Path, { headers: { 'If-None-Match': value } });
      expect(res.status, value).toBe(304);
      expect(res.headers.etag).toBe(etag);
      expect(res.body.length).toBe(0);
    }
    const other = await httpRequest(server.url, qcow2Path, { headers: { 'If-None-Match': '"sha256:other"' } });
    expect(other.status).toBe(200);
  });

  it('answers If-Modified-Since with 304 when unchanged', async () => {
    const future = new Date(Date.now() + 3_600_000).toUTCString();
    const res = await httpRequest(server.url, qcow2Path, { headers: { 'If-Modified-Since': future } });
    expect(res.status).toBe(304);
    const past = await httpRequest(server.url, qcow2Path, { headers: { 'If-Modified-Since': 'Thu, 01 Jan 1970 00:00:00 GMT' } });
    expect(past.status).toBe(200);
  });

  it('fails If-Match with 412 when the tag differs', async () => {
    const res = await httpRequest(server.url, qcow2Path, { headers: { 'If-Match': '"sha256:other"' } });
    expect(res.status).toBe(412);
    const ok = await httpRequest(server.url, qcow2Path, { headers: { 'If-Match': `"sha256:${sha256(qcow2)}"` } });
    expect(ok.status).toBe(200);
  });
});

describe('only finished artifacts inside the directory are reachable', () => {
  it.each([
    [`/${STEM}/${STEM}.qcow2.part`, 'partial file not in SHA256SUMS'],
    [`/${STEM}/.hidden`, 'dotfile'],
    [`/${STEM}/escape.qcow2`, 'symlink pointing outside'],
    ['/.staging-0123/staged.qcow2', 'staging directory'],
    ['/.staging-0123/SHA256SUMS', 'staging directory'],
    ['/unfinished/unfinished.qcow2', 'directory without SHA256SUMS'],
    ['/linked-outside/outside.qcow2', 'symlinked directory outside'],
    ['/linked-outside/SHA256SUMS', 'symlinked directory outside'],
    [`/${STEM}`, 'a directory itself'],
    [`/${STEM}/`, 'a directory itself'],
  ])('%s (%s) is 404', async (path) => {
    const res = await httpRequest(server.url, path);
    expect(res.status).toBe(404);
  });

  const traversals = [
    '/../secret.txt',
    `/${STEM}/../../secret.txt`,
    '/%2e%2e/secret.txt',
    '/%2E%2E/%2e%2e/secret.txt',
    '/%2e%2e%2fsecret.txt',
    `/${STEM}/%2e%2e%2f%2e%2e%2fsecret.txt`,
    `/${STEM}/..%5c..%5csecret.txt`,
    `/${STEM}/..\\..\\secret.txt`,
    '/%252e%252e/%252e%252e/secret.txt',
    `/${STEM}/%252e%252e%252f%252e%252e%252fsecret.txt`,
    '//etc/passwd',
    '/etc/passwd',
    `/${STEM}/${STEM}.qcow2%00.txt`,
    '/%00',
    `http://127.0.0.1/../secret.txt`,
    '/./' + STEM + `/${STEM}.qcow2`,
    '/%c0%ae%c0%ae/secret.txt',
  ];

  it.each(traversals)('%s is refused', async (path) => {
    const res = await httpRequest(server.url, path);
    expect([400, 404]).toContain(res.status);
    expect(res.body.toString('latin1')).not.toContain(SECRET);
    expect(res.body.toString('latin1')).not.toContain('root:');
  });

  it('refuses the absolute path of a file outside the directory', async () => {
    const res = await httpRequest(server.url, join(root, 'secret.txt'));
    expect(res.status).toBe(404);
    const encoded = await httpRequest(server.url, encodeURIComponent(join(root, 'secret.txt')).replace(/^%2F/, '/'));
    expect(encoded.status).toBe(404);
  });

  it('refuses raw NUL bytes and absolute-form traversal on the wire', async () => {
    const nul = await rawRequest(server.url, `GET /${STEM}/\0../../secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    expect(nul).toMatch(/^HTTP\/1\.1 400/);
    expect(nul).not.toContain(SECRET);
    const absolute = await rawRequest(server.url, `GET http://x/${STEM}/../../secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    expect(absolute).toMatch(/^HTTP\/1\.1 (400|404)/);
    expect(absolute).not.toContain(SECRET);
  });

  it('decodes request paths exactly once', () => {
    expect(decodeRequestPath('/a/b%20c.qcow2?x=1')).toBe('/a/b c.qcow2');
    expect(decodeRequestPath('/%252e%252e/x')).toBe('/%2e%2e/x');
    expect(decodeRequestPath('/%2e%2e/x')).toBeUndefined();
    expect(decodeRequestPath('/a/%5c')).toBeUndefined();
    expect(decodeRequestPath('/a%00')).toBeUndefined();
    expect(decodeRequestPath('/%zz')).toBeUndefined();
    expect(decodeRequestPath('*')).toBeUndefined();
  });
});

describe('read-only', () => {
  it.each(['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'])('%s gives 405 with Allow', async (method) => {
    const res = await httpRequest(server.url, qcow2Path, { method });
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe('GET, HEAD');
  });
});

describe('access log', () => {
  it('emits one log event per request with method, path, status, bytes and duration', async () => {
    const before = reporter.events.length;
    await httpRequest(server.url, qcow2Path, { headers: { Range: 'bytes=0-1023' } });
    await new Promise((resolve) => setTimeout(resolve, 20));
    const lines = reporter.events.slice(before).flatMap((event) => (event.type === 'log' && event.source === 'serve' ? [event.line] : []));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^127\\.0\\.0\\.1 GET ${qcow2Path.replace(/\./g, '\\.')} 206 1024 \\d+ms$`));
  });
});

describe('changes on disk while serving', () => {
  it('shows an artifact directory renamed into place after startup', async () => {
    const staging = join(out, '.staging-new');
    await writeArtifactDir(out, '.staging-new', { 'late.qcow2': 'late artifact' });
    await rename(staging, join(out, 'late'));
    // Unknown paths trigger a rescan at most once a second.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const res = await httpRequest(server.url, '/late/late.qcow2');
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('late artifact');
  });

  it('serves a replaced artifact with its new digest, never the old one', async () => {
    await writeArtifactDir(out, 'replaced', { 'r.qcow2': 'first build' });
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const first = await httpRequest(server.url, '/replaced/r.qcow2');
    expect(first.headers.etag).toBe(`"sha256:${sha256('first build')}"`);
    await rm(join(out, 'replaced'), { recursive: true });
    await writeArtifactDir(out, '.staging-r', { 'r.qcow2': 'second build!' });
    await rename(join(out, '.staging-r'), join(out, 'replaced'));
    const second = await httpRequest(server.url, '/replaced/r.qcow2');
    expect(second.status).toBe(200);
    expect(second.body.toString()).toBe('second build!');
    expect(second.headers.etag).toBe(`"sha256:${sha256('second build!')}"`);
  });
});

describe('lifecycle', () => {
  it('serves a single artifact directory given directly', async () => {
    await using direct = await startArtifactServer({ dir: join(out, STEM) });
    const res = await httpRequest(direct.url, `/${STEM}.raw`);
    expect(res.status).toBe(200);
    expect(res.body.equals(raw)).toBe(true);
  });

  it('fails with a KibError naming the directory when it does not exist', async () => {
    const missing = join(root, 'missing');
    const error = await startArtifactServer({ dir: missing }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KibError);
    expect((error as KibError).code).toBe('SERVE_FAILED');
    expect((error as KibError).message).toContain(missing);
  });

  it('closes when its signal is aborted, and refuses new connections', async () => {
    const controller = new AbortController();
    const started = await startArtifactServer({ dir: out, signal: controller.signal });
    expect((await httpRequest(started.url, qcow2Path)).status).toBe(200);
    controller.abort();
    await started.close();
    await expect(httpRequest(started.url, qcow2Path)).rejects.toThrow(/ECONNREFUSED/);
  });

  it('lets an in-flight download finish after close(), within the deadline', async () => {
    const big = randomData(8 * 1024 * 1024);
    await writeArtifactDir(out, 'big', { 'big.raw': big });
    const started = await startArtifactServer({ dir: out, shutdownTimeoutMs: 10_000 });
    const received: Buffer[] = [];
    let closePromise: Promise<void> | undefined;
    const done = new Promise<number>((resolve, reject) => {
      const req = request(`${started.url}big/big.raw`, (res) => {
        res.once('data', (chunk: Buffer) => {
          received.push(chunk);
          // Close while the body is still streaming, then keep reading.
          closePromise = started.close();
          res.on('data', (more: Buffer) => received.push(more));
        });
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
    expect(await done).toBe(200);
    expect(Buffer.concat(received).equals(big)).toBe(true);
    await closePromise;
    await expect(httpRequest(started.url, '/big/big.raw')).rejects.toThrow(/ECONNREFUSED/);
  });

  it('destroys a stalled response at the shutdown deadline', async () => {
    const started = await startArtifactServer({ dir: out, shutdownTimeoutMs: 300 });
    const fdsBefore = countOpenFds();
    let response: IncomingMessage | undefined;
    let receivedBytes = 0;
    const outcome = new Promise<string>((resolve) => {
      const req = request(`${started.url}big/big.raw`, (res) => {
        response = res;
        // Not reading: the server's writes back up and the response cannot finish.
        res.pause();
        res.on('data', (chunk: Buffer) => (receivedBytes += chunk.length));
        res.on('error', () => resolve('aborted'));
        res.on('close', () => resolve(res.complete ? 'complete' : 'aborted'));
      });
      req.on('error', () => resolve('aborted'));
      req.end();
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const t0 = performance.now();
    await started.close();
    const tookMs = performance.now() - t0;
    expect(tookMs).toBeGreaterThanOrEqual(250);
    expect(tookMs).toBeLessThan(5_000);
    // A paused client only notices the closed connection once it reads again.
    response?.resume();
    expect(await outcome).toBe('aborted');
    expect(receivedBytes).toBeLessThan(8 * 1024 * 1024);
    expect(await waitForFdCount(fdsBefore)).toBeLessThanOrEqual(fdsBefore);
  });

  it('closes idle keep-alive connections at once on close()', async () => {
    const { Agent } = await import('node:http');
    const agent = new Agent({ keepAlive: true });
    const started = await startArtifactServer({ dir: out, shutdownTimeoutMs: 30_000 });
    await httpRequest(started.url, qcow2Path, { agent });
    const t0 = performance.now();
    await started.close();
    expect(performance.now() - t0).toBeLessThan(2_000);
    agent.destroy();
  });
});
