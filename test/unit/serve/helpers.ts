import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { request, type Agent, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { KibEvent, Reporter } from '../../../src/report/events.js';

export interface HttpResult {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** One request with node:http; the path is sent exactly as given (no normalisation). */
export function httpRequest(
  baseUrl: string,
  path: string,
  options: { method?: string; headers?: Record<string, string>; agent?: Agent | false } = {},
): Promise<HttpResult> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        method: options.method ?? 'GET',
        path,
        headers: options.headers ?? {},
        agent: options.agent ?? false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Sends raw bytes on a fresh TCP connection and returns everything the server answers. */
export function rawRequest(baseUrl: string, bytes: string): Promise<string> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname);
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.on('error', reject);
    socket.setTimeout(5_000, () => socket.destroy(new Error('raw request timed out')));
    socket.write(bytes, 'latin1');
  });
}

export function recordingReporter(): Reporter & { events: KibEvent[]; logLines(): string[] } {
  const events: KibEvent[] = [];
  return {
    events,
    emit: (event) => events.push(event),
    logLines: () => events.flatMap((event) => (event.type === 'log' ? [event.line] : [])),
  };
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Writes an artifact directory the way the export phase leaves it: the listed files, then
 * SHA256SUMS naming them, plus the unlisted companions manifest.json and sbom.cdx.json.
 */
export async function writeArtifactDir(
  dir: string,
  stem: string,
  files: Record<string, Buffer | string>,
  companions: Record<string, string> = { 'manifest.json': '{"name":"test"}\n', 'sbom.cdx.json': '{"bomFormat":"CycloneDX"}\n' },
): Promise<Record<string, string>> {
  const target = join(dir, stem);
  await mkdir(target, { recursive: true });
  const sums: Record<string, string> = {};
  for (const [name, content] of Object.entries(files)) {
    await writeFile(join(target, name), content);
    sums[name] = sha256(content);
  }
  for (const [name, content] of Object.entries(companions)) await writeFile(join(target, name), content);
  const text = Object.entries(sums)
    .map(([name, digest]) => `${digest}  ${name}\n`)
    .join('');
  await writeFile(join(target, 'SHA256SUMS'), text);
  return sums;
}

export function randomData(sizeBytes: number): Buffer {
  return randomBytes(sizeBytes);
}

/** Open descriptors of this process (Linux). */
export function countOpenFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Waits until the descriptor count drops back to `limit` (sockets close asynchronously). */
export async function waitForFdCount(limit: number, timeoutMs = 5_000): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  let count = countOpenFds();
  while (count > limit && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    count = countOpenFds();
  }
  return count;
}
