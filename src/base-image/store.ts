import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { KibError } from '../core/errors.js';

/**
 * The content-addressed store of base images: `<cache>/base/sha256/<hex>` is a verified image
 * whose sha256 is `<hex>`, and `<hex>.json` says where it came from. An entry appears only by an
 * atomic rename of a complete, verified file, so whatever is there can be trusted by its name.
 */

export interface BaseStoreMetadata {
  /** Where the bytes came from: an http(s) URL or a file URL. */
  url: string;
  sizeBytes: number;
  /** RFC 3339 UTC. */
  fetchedAt: string;
  /** The request that produced this entry, as given (the key a later lookup by URL uses). */
  source: { url: string; checksumUrl: string | null; sha256: string | null };
}

export function baseStoreDir(cacheDir: string): string {
  return join(cacheDir, 'base', 'sha256');
}

export function storedImagePath(cacheDir: string, sha256: string): string {
  return join(baseStoreDir(cacheDir), sha256);
}

export async function storedImageSize(cacheDir: string, sha256: string): Promise<number | undefined> {
  try {
    const info = await stat(storedImagePath(cacheDir, sha256));
    return info.isFile() ? info.size : undefined;
  } catch {
    return undefined;
  }
}

export async function readStoreMetadata(cacheDir: string, sha256: string): Promise<BaseStoreMetadata | undefined> {
  try {
    return JSON.parse(await readFile(`${storedImagePath(cacheDir, sha256)}.json`, 'utf8')) as BaseStoreMetadata;
  } catch {
    return undefined;
  }
}

export async function writeStoreMetadata(cacheDir: string, sha256: string, metadata: BaseStoreMetadata): Promise<void> {
  await writeFileAtomic(`${storedImagePath(cacheDir, sha256)}.json`, `${JSON.stringify(metadata, null, 2)}\n`);
}

/** The newest store entry fetched from exactly this source URL, if any. */
export async function findStoredByUrl(cacheDir: string, url: string): Promise<{ sha256: string; metadata: BaseStoreMetadata } | undefined> {
  let names: string[];
  try {
    names = await readdir(baseStoreDir(cacheDir));
  } catch {
    return undefined;
  }
  let best: { sha256: string; metadata: BaseStoreMetadata } | undefined;
  for (const name of names) {
    const match = /^([0-9a-f]{64})\.json$/.exec(name);
    if (match?.[1] === undefined) continue;
    const metadata = await readStoreMetadata(cacheDir, match[1]);
    if (metadata === undefined || (metadata.source.url !== url && metadata.url !== url)) continue;
    if ((await storedImageSize(cacheDir, match[1])) === undefined) continue;
    if (best === undefined || metadata.fetchedAt > best.metadata.fetchedAt) best = { sha256: match[1], metadata };
  }
  return best;
}

const MAGIC: readonly { bytes: readonly number[]; what: string }[] = [
  { bytes: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], what: 'an xz-compressed file' },
  { bytes: [0x1f, 0x8b], what: 'a gzip-compressed file' },
  { bytes: [0x28, 0xb5, 0x2f, 0xfd], what: 'a zstd-compressed file' },
  { bytes: [0x42, 0x5a, 0x68], what: 'a bzip2-compressed file' },
  { bytes: [0x4b, 0x44, 0x4d, 0x56], what: 'a VMDK image' },
  { bytes: [0x76, 0x68, 0x64, 0x78, 0x66, 0x69, 0x6c, 0x65], what: 'a VHDX image' },
];

/**
 * qcow2 or raw, from the first bytes of the file (qcow2 starts with "QFI\xfb"). Compressed files
 * and other image formats are rejected here rather than failing later inside QEMU.
 */
export async function detectImageFormat(path: string, what: string): Promise<'qcow2' | 'raw'> {
  const handle = await open(path, 'r');
  let head: Buffer;
  let size: number;
  try {
    size = (await handle.stat()).size;
    head = Buffer.alloc(16);
    await handle.read(head, 0, head.length, 0);
  } finally {
    await handle.close();
  }
  if (size === 0) throw new KibError('BASE_FORMAT', `${what} is empty`);
  if (head[0] === 0x51 && head[1] === 0x46 && head[2] === 0x49 && head[3] === 0xfb) return 'qcow2';
  for (const magic of MAGIC) {
    if (magic.bytes.every((byte, index) => head[index] === byte)) {
      throw new KibError('BASE_FORMAT', `${what} is ${magic.what}, not a qcow2 or raw disk image`, {
        hint: 'Decompress or convert it first (for example: xz -d, or qemu-img convert -O qcow2) and pass the result with --base.',
      });
    }
  }
  return 'raw';
}

export async function writeFileAtomic(path: string, content: string): Promise<void> {
  const temp = join(dirname(path), `.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await open(temp, 'wx');
    try {
      await handle.writeFile(content, 'utf8');
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}
