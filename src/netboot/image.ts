import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, open, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KibError } from '../core/errors.js';
import { detectImageFormat } from '../base-image/store.js';
import { run } from '../process/index.js';
import { silentReporter, type Reporter } from '../report/events.js';
import { temporaryName } from './stage2.js';

/**
 * The image as netboot serves it: the raw disk compressed with zstd (stage2 decompresses at about
 * the disk's speed; gzip was half as fast), made once per artifact and cached. The sha256 and size
 * are those of the *uncompressed* raw, which is what stage2 reads back from the disk.
 */
export interface ServedImage {
  zstPath: string;
  sha256: string;
  sizeBytes: number;
  zstSizeBytes: number;
  /** The raw image's first 64 KiB (its partition tables), for the per-Machine GPT edit. */
  head: Buffer;
}

/** Enough for LBA 0, the GPT header and 128 entries of 128 bytes. */
export const IMAGE_HEAD_BYTES = 64 * 1024;

interface ImageMeta {
  source: string;
  sourceSizeBytes: number;
  sourceMtimeMs: number;
  sha256: string;
  sizeBytes: number;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Returns the cached raw+zstd of `artifact` (a raw or qcow2 disk image), making it if the artifact
 * changed (path, size and modification time) since the last time.
 */
export async function ensureServedImage(artifact: string, options: { cacheDir: string; signal?: AbortSignal; reporter?: Reporter }): Promise<ServedImage> {
  const reporter = options.reporter ?? silentReporter;
  const source = await realpath(artifact).catch((error: unknown) => {
    throw new KibError('NETBOOT_IMAGE', `Cannot read the image ${artifact}: ${(error as Error).message}`);
  });
  const info = await stat(source);
  const key = createHash('sha256').update(JSON.stringify([source, info.size, info.mtimeMs])).digest('hex').slice(0, 16);
  const dir = join(options.cacheDir, 'netboot', 'images');
  const zstPath = join(dir, `${key}.raw.zst`);
  const metaPath = join(dir, `${key}.json`);
  const headPath = join(dir, `${key}.head`);
  if (existsSync(zstPath) && existsSync(metaPath) && existsSync(headPath)) {
    const meta = JSON.parse(await readFile(metaPath, 'utf8')) as ImageMeta;
    return { zstPath, sha256: meta.sha256, sizeBytes: meta.sizeBytes, zstSizeBytes: (await stat(zstPath)).size, head: await readFile(headPath) };
  }
  await mkdir(dir, { recursive: true });
  const opts = { timeoutMs: 60 * 60_000, ...(options.signal === undefined ? {} : { signal: options.signal }) };
  const format = await detectImageFormat(source, 'the netboot image');
  let raw = source;
  const tempRaw = temporaryName(dir, `${key}.raw`);
  const tempZst = temporaryName(dir, `${key}.raw.zst`);
  try {
    if (format === 'qcow2') {
      reporter.emit({ type: 'log', source: 'netboot', line: `converting ${source} to raw` });
      await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', source, tempRaw], opts);
      raw = tempRaw;
    }
    const sizeBytes = (await stat(raw)).size;
    const sha256 = await sha256File(raw);
    reporter.emit({ type: 'log', source: 'netboot', line: `compressing the raw image (${sizeBytes} bytes, sha256 ${sha256}) with zstd` });
    await run('zstd', ['-q', '-T0', '-3', '--sparse', raw, '-o', tempZst], opts);
    const head = await readHead(raw);
    await writeFile(headPath, head);
    const meta: ImageMeta = { source, sourceSizeBytes: info.size, sourceMtimeMs: info.mtimeMs, sha256, sizeBytes };
    await writeFile(metaPath, `${JSON.stringify(meta, null, 2)}\n`);
    await rename(tempZst, zstPath);
    return { zstPath, sha256, sizeBytes, zstSizeBytes: (await stat(zstPath)).size, head };
  } finally {
    await rm(tempRaw, { force: true });
    await rm(tempZst, { force: true });
  }
}

async function readHead(path: string): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const head = Buffer.alloc(IMAGE_HEAD_BYTES);
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    return head.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}
