import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink, stat, writeFile } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CancelledError, KibError, throwIfAborted } from '../core/errors.js';
import type { Artifact, ArtifactKind } from '../core/types.js';

const READ_CHUNK_BYTES = 1024 * 1024;

/** Streams a file through SHA-256; memory stays flat for multi-GiB disks. */
export async function sha256File(path: string, options: { signal?: AbortSignal } = {}): Promise<string> {
  throwIfAborted(options.signal, `Hashing ${path}`);
  const hash = createHash('sha256');
  try {
    await pipeline(
      createReadStream(path, { highWaterMark: READ_CHUNK_BYTES }),
      new Writable({
        write(chunk: Buffer, _encoding, callback) {
          hash.update(chunk);
          callback();
        },
      }),
      options.signal === undefined ? {} : { signal: options.signal },
    );
  } catch (error) {
    if (options.signal?.aborted === true) throw new CancelledError(`Hashing ${path}`);
    throw error;
  }
  return hash.digest('hex');
}

export function sha256Text(text: string | Uint8Array): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * The text of a SHA256SUMS file as `sha256sum -c` reads it: `<hex>  <name>` (two spaces: text
 * mode), sorted by name in byte order so the file does not depend on the order artifacts were made.
 */
export function renderSha256Sums(entries: readonly { file: string; sha256: string }[]): string {
  const seen = new Set<string>();
  for (const entry of entries) {
    if (!/^[0-9a-f]{64}$/.test(entry.sha256)) throw new KibError('EXPORT_INVALID', `sha256 of ${entry.file} is not 64 lowercase hex digits: '${entry.sha256}'`);
    // sha256sum escapes names with a backslash or newline; ours never need that, so refuse them.
    if (entry.file === '' || /[\\\n\r]/.test(entry.file) || entry.file.startsWith('/')) {
      throw new KibError('EXPORT_INVALID', `'${entry.file}' cannot be listed in SHA256SUMS: expected a plain relative file name`);
    }
    if (seen.has(entry.file)) throw new KibError('EXPORT_INVALID', `'${entry.file}' is listed twice in SHA256SUMS`);
    seen.add(entry.file);
  }
  const sorted = [...entries].sort((a, b) => compareBytes(a.file, b.file));
  return sorted.map((entry) => `${entry.sha256}  ${entry.file}\n`).join('');
}

export const SHA256SUMS_FILE = 'SHA256SUMS';

/**
 * Writes `<dir>/SHA256SUMS` for artifacts inside `dir` (absolute paths, or paths relative to
 * `dir`) and returns it as an artifact.
 */
export async function writeSha256Sums(
  dir: string,
  artifacts: readonly { path: string; sha256: string }[],
): Promise<Artifact> {
  const entries = artifacts.map((artifact) => {
    const file = relative(dir, resolve(dir, artifact.path)).split(sep).join('/');
    if (file === '' || file === '..' || file.startsWith('../') || isAbsolute(file)) {
      throw new KibError('EXPORT_INVALID', `${artifact.path} is not inside ${dir}; SHA256SUMS lists only files beside it`);
    }
    return { file, sha256: artifact.sha256 };
  });
  const text = renderSha256Sums(entries);
  const path = join(dir, SHA256SUMS_FILE);
  await writeFile(path, text);
  return textArtifact(path, 'sha256sums', text);
}

export function textArtifact(path: string, kind: ArtifactKind, text: string): Artifact {
  return { path, kind, sha256: sha256Text(text), sizeBytes: Buffer.byteLength(text, 'utf8') };
}

/**
 * A digest of a directory tree that changes when any file's path, content, symlink target or
 * executable bit changes, and not when timestamps or the walk order do. Empty directories are
 * ignored (Git does not keep them either). The digest is the SHA-256 of lines
 * `<kind> <sha256-or-target> <relative/path>\n` sorted by path in byte order.
 */
export async function hashTree(dir: string, options: { signal?: AbortSignal } = {}): Promise<string> {
  const info = await stat(dir);
  if (!info.isDirectory()) throw new KibError('EXPORT_INVALID', `${dir} is not a directory; cannot hash it as a tree`);
  const lines: { path: string; line: string }[] = [];
  const walk = async (absolute: string, rel: string): Promise<void> => {
    const entries = await readdir(absolute, { withFileTypes: true });
    for (const entry of entries) {
      throwIfAborted(options.signal, `Hashing ${dir}`);
      const childAbs = join(absolute, entry.name);
      const childRel = rel === '' ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory()) {
        await walk(childAbs, childRel);
      } else if (entry.isSymbolicLink()) {
        lines.push({ path: childRel, line: `link ${await readlink(childAbs)} ${childRel}\n` });
      } else if (entry.isFile()) {
        const mode = (await lstat(childAbs)).mode;
        const kind = (mode & 0o111) !== 0 ? 'exec' : 'file';
        const digest = await sha256File(childAbs, options.signal === undefined ? {} : { signal: options.signal });
        lines.push({ path: childRel, line: `${kind} ${digest} ${childRel}\n` });
      }
      // Sockets, FIFOs and devices have no content worth pinning in a playbook tree.
    }
  };
  await walk(dir, '');
  lines.sort((a, b) => compareBytes(a.path, b.path));
  return sha256Text(lines.map((entry) => entry.line).join(''));
}

/** Orders strings by their UTF-8 bytes, like `LC_ALL=C sort`, independent of the host's locale. */
export function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
