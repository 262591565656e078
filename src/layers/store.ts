import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants, createReadStream } from 'node:fs';
import { copyFile, mkdir, open, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import { CancelledError, KibError, throwIfAborted } from '../core/errors.js';
import { isProcessRunning, run } from '../process/index.js';
import { processStartTime } from '../vm/run-dir.js';
import { acquireLock } from './lock.js';

/**
 * A content-addressed store of qcow2 layers, one per provisioning stage result, keyed by the
 * stage key (src/pipeline/plan.ts):
 *
 *   <root>/entries/<key>/layer.qcow2   the stage's overlay, its backing file rewritten to the
 *                                      backing entry's layer.qcow2 (or the base image)
 *                        key.json      the key's input document (what the key is a hash of)
 *                        meta.json     sha256 and size of layer.qcow2, backing, stage, created
 *                        used          its mtime is the entry's last use (LRU pruning)
 *                        leases/       one file per process using the entry; prune skips it
 *   <root>/index/<stage>.json          the most recent key stored for the stage (`plan --explain`)
 *   <root>/tmp/                        puts in progress (same filesystem, renamed into entries/)
 *   <root>/lock                        held while entries/ or index/ change
 *
 * Nothing half-written is ever in entries/: a put writes into tmp/, fsyncs, then renames. A get
 * verifies the entry (and its backing chain) before use; anything wrong is a miss, with a reason,
 * and the bad entry is removed so the next build rewrites it.
 */

export const LAYER_FILE = 'layer.qcow2';
export const KEY_FILE = 'key.json';
export const META_FILE = 'meta.json';
const USED_FILE = 'used';
const LEASES_DIR = 'leases';
const TEMP_OWNER_FILE = 'owner.json';
/** A temp dir without owner.json younger than this may be a put that is just starting. */
const TEMP_GRACE_MS = 60_000;
export const DEFAULT_LAYER_STORE_MAX_BYTES = 30 * 1024 ** 3;

const keySchema = z.string().regex(/^[0-9a-f]{64}$/, 'expected a 64-hex-digit key');

const backingSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('layer'), key: keySchema }),
  z.strictObject({ kind: z.literal('file'), path: z.string().min(1), sha256: z.string().optional() }),
  z.strictObject({ kind: z.literal('none') }),
]);

const metaSchema = z.strictObject({
  schema: z.literal(1),
  key: keySchema,
  stage: z.string().min(1),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  sizeBytes: z.number().int().nonnegative(),
  backing: backingSchema,
  createdAt: z.string(),
});

export type LayerBacking = z.infer<typeof backingSchema>;
export type LayerMeta = z.infer<typeof metaSchema>;

export interface LayerEntry {
  key: string;
  dir: string;
  /** Absolute path of the layer's qcow2: use it as a backing file, never write to it. */
  path: string;
  meta: LayerMeta;
}

export interface LayerInfo extends LayerEntry {
  /** Bytes on disk of the whole entry. */
  sizeBytes: number;
  lastUsedMs: number;
  leased: boolean;
}

export type LayerLookup =
  | { status: 'hit'; entry: LayerEntry; release: () => Promise<void> }
  | { status: 'miss'; reason: 'absent' | 'corrupt' | 'broken-chain'; message: string };

export interface PruneResult {
  removed: { key: string; stage: string; sizeBytes: number; why: string }[];
  freedBytes: number;
  tempDirsRemoved: number;
}

export interface PutRequest {
  key: string;
  stage: string;
  /** The stage's qcow2 overlay (powered off). It is copied; the caller keeps or removes it. */
  sourcePath: string;
  /** What the key is a hash of; stored as key.json. */
  keyDocument: unknown;
  backing: LayerBacking;
  signal?: AbortSignal;
}

export class LayerStore {
  readonly root: string;
  readonly maxSizeBytes: number;

  constructor(root: string, options: { maxSizeBytes?: number } = {}) {
    this.root = root;
    this.maxSizeBytes = options.maxSizeBytes ?? DEFAULT_LAYER_STORE_MAX_BYTES;
  }

  /** The store inside kib's cache directory. */
  static inCache(cacheDir: string, options: { maxSizeBytes?: number } = {}): LayerStore {
    return new LayerStore(join(cacheDir, 'layers'), options);
  }

  entryDir(key: string): string {
    return join(this.root, 'entries', keySchema.parse(key));
  }

  layerPath(key: string): string {
    return join(this.entryDir(key), LAYER_FILE);
  }

  /** Whether an entry for the key is stored (not verified: `get` does that before use). */
  async has(key: string): Promise<boolean> {
    return (await this.readMeta(key)) !== undefined;
  }

  async readKeyDocument(key: string): Promise<unknown> {
    try {
      return JSON.parse(await readFile(join(this.entryDir(key), KEY_FILE), 'utf8')) as unknown;
    } catch {
      return undefined;
    }
  }

  /** The key most recently stored for a stage, if any. */
  async latestKey(stage: string): Promise<string | undefined> {
    try {
      const data = JSON.parse(await readFile(this.indexPath(stage), 'utf8')) as { key?: unknown };
      return typeof data.key === 'string' && keySchema.safeParse(data.key).success ? data.key : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Stores a stage's overlay under its key, atomically: copy into tmp/ on the store's filesystem,
   * point its backing file at the backing entry, fsync, then (under the lock) rename into
   * entries/. A key already stored by another process wins; this copy is discarded (equal keys
   * mean equal inputs). Then prunes to the size cap, never removing the new entry.
   */
  async put(request: PutRequest): Promise<LayerEntry> {
    keySchema.parse(request.key);
    const { signal } = request;
    await this.cleanTemp();
    if (request.backing.kind === 'layer' && !(await this.has(request.backing.key))) {
      throw new KibError('LAYER_BACKING_MISSING', `Cannot store the ${request.stage} layer: its backing layer ${request.backing.key.slice(0, 12)} is not in the store`);
    }
    const tmpDir = join(this.root, 'tmp', `${request.key.slice(0, 16)}-${process.pid}-${randomBytes(4).toString('hex')}`);
    await mkdir(tmpDir, { recursive: true });
    try {
      await writeFile(join(tmpDir, TEMP_OWNER_FILE), `${JSON.stringify({ pid: process.pid, startTime: processStartTime(process.pid) })}\n`);
      const layer = join(tmpDir, LAYER_FILE);
      // A reflink where the filesystem offers one, a copy otherwise.
      await copyFile(request.sourcePath, layer, fsConstants.COPYFILE_FICLONE);
      throwIfAborted(signal, 'Storing the layer');
      const backingPath = this.backingPath(request.backing);
      if (backingPath !== undefined) {
        // -u: only the header changes; the data already is the difference to this backing file.
        await run('qemu-img', ['rebase', '-u', '-f', 'qcow2', '-b', backingPath, '-F', await backingFormat(backingPath), layer], { timeoutMs: 60_000, ...(signal === undefined ? {} : { signal }) });
      }
      const sha256 = await sha256File(layer, signal === undefined ? {} : { signal });
      const meta: LayerMeta = {
        schema: 1,
        key: request.key,
        stage: request.stage,
        sha256,
        sizeBytes: (await stat(layer)).size,
        backing: request.backing,
        createdAt: new Date().toISOString(),
      };
      await writeFile(join(tmpDir, KEY_FILE), `${JSON.stringify(request.keyDocument, null, 2)}\n`);
      await writeFile(join(tmpDir, META_FILE), `${JSON.stringify(meta, null, 2)}\n`);
      await writeFile(join(tmpDir, USED_FILE), '');
      await rm(join(tmpDir, TEMP_OWNER_FILE), { force: true });
      for (const file of [LAYER_FILE, KEY_FILE, META_FILE, USED_FILE]) await fsyncPath(join(tmpDir, file));
      await fsyncPath(tmpDir);
      throwIfAborted(signal, 'Storing the layer');

      await mkdir(join(this.root, 'entries'), { recursive: true });
      {
        await using _lock = await this.lock(signal);
        const target = this.entryDir(request.key);
        if ((await this.readMeta(request.key)) === undefined) {
          // A directory without meta.json cannot come from a put; clear it rather than fail.
          await rm(target, { recursive: true, force: true });
          await rename(tmpDir, target);
          await fsyncPath(join(this.root, 'entries'));
        }
        await this.writeIndex(request.stage, request.key);
      }
      await this.prune({ maxSizeBytes: this.maxSizeBytes, keep: [request.key] });
      const stored = await this.readMeta(request.key);
      if (stored === undefined) throw new KibError('LAYER_PUT_FAILED', `The ${request.stage} layer ${request.key.slice(0, 12)} vanished right after it was stored`);
      return { key: request.key, dir: this.entryDir(request.key), path: this.layerPath(request.key), meta: stored };
    } finally {
      await rm(tmpDir, { recursive: true, force: true });
    }
  }

  /**
   * Looks a key up and verifies the entry and its backing chain before use: meta.json parses, every
   * layer's sha256 matches what was recorded, every backing entry (or base file) exists, and
   * `qemu-img check` accepts the chain. Anything wrong is a miss with a message, and the bad entry
   * (with the entries stacked on it) is removed. A hit holds a lease on the chain until `release`,
   * so a concurrent prune leaves it alone.
   */
  async get(key: string, options: { signal?: AbortSignal; verifyContent?: boolean } = {}): Promise<LayerLookup> {
    keySchema.parse(key);
    const { signal } = options;
    if ((await this.readMeta(key)) === undefined && !(await exists(this.entryDir(key)))) {
      return { status: 'miss', reason: 'absent', message: `no layer stored for key ${key.slice(0, 12)}` };
    }
    const releases: (() => Promise<void>)[] = [];
    const releaseAll = async (): Promise<void> => {
      for (const release of releases.splice(0)) await release();
    };
    try {
      const chain: LayerEntry[] = [];
      let current: string | undefined = key;
      const seen = new Set<string>();
      while (current !== undefined) {
        if (seen.has(current)) return await this.discard(key, 'broken-chain', `the backing chain of layer ${key.slice(0, 12)} loops at ${current.slice(0, 12)}`, releaseAll);
        seen.add(current);
        const meta = await this.readMeta(current);
        if (meta === undefined) {
          if (current === key) return await this.discard(key, 'corrupt', `layer ${key.slice(0, 12)} has no readable meta.json`, releaseAll);
          return await this.discard(key, 'broken-chain', `layer ${key.slice(0, 12)} is stacked on layer ${current.slice(0, 12)}, which is no longer in the store`, releaseAll);
        }
        releases.push(await this.lease(current));
        chain.push({ key: current, dir: this.entryDir(current), path: this.layerPath(current), meta });
        if (meta.backing.kind === 'file' && !(await exists(meta.backing.path))) {
          return await this.discard(key, 'broken-chain', `layer ${current.slice(0, 12)} is stacked on ${meta.backing.path}, which no longer exists`, releaseAll);
        }
        current = meta.backing.kind === 'layer' ? meta.backing.key : undefined;
      }
      for (const entry of chain) {
        throwIfAborted(signal, 'Verifying the layer');
        const size = await stat(entry.path).then((s) => s.size).catch(() => undefined);
        const actual = size === undefined ? undefined : size !== entry.meta.sizeBytes ? `size ${size}` : options.verifyContent === false ? entry.meta.sha256 : await sha256File(entry.path, signal === undefined ? {} : { signal });
        if (actual !== entry.meta.sha256) {
          const measured = actual === undefined ? 'the file is missing' : actual.startsWith('size') ? `it has ${actual} instead of ${entry.meta.sizeBytes} bytes` : `its sha256 is ${actual}`;
          const what = entry.key === key ? `layer ${key.slice(0, 12)}` : `layer ${entry.key.slice(0, 12)} (under ${key.slice(0, 12)})`;
          await this.removeWithDependents(entry.key, releaseAll);
          return { status: 'miss', reason: 'corrupt', message: `${what} (${entry.meta.stage}) is corrupt: recorded sha256 ${entry.meta.sha256}, but ${measured}; removed, it will be rebuilt` };
        }
      }
      const check = await run('qemu-img', ['check', '-q', '-f', 'qcow2', this.layerPath(key)], { allowFailure: true, timeoutMs: 300_000, ...(signal === undefined ? {} : { signal }) });
      // 0: clean; 3: leaked clusters only (wasted space, no damage). 1 and 2: corruption, or a
      // backing file that cannot be opened.
      if (check.exitCode !== 0 && check.exitCode !== 3) {
        return await this.discard(key, 'corrupt', `qemu-img check rejects layer ${key.slice(0, 12)} (exit ${check.exitCode}): ${(check.stderr || check.stdout).trim().split('\n').slice(0, 3).join(' ')}`, releaseAll);
      }
      const now = new Date();
      for (const entry of chain) await utimes(join(entry.dir, USED_FILE), now, now).catch(() => undefined);
      const top = chain[0] as LayerEntry;
      return { status: 'hit', entry: top, release: releaseAll };
    } catch (error) {
      await releaseAll();
      if (error instanceof CancelledError || signal?.aborted === true) throw error;
      // An entry removed by a concurrent prune while being read: a miss, not a crash.
      return { status: 'miss', reason: 'corrupt', message: `layer ${key.slice(0, 12)} could not be read: ${(error as Error).message}` };
    }
  }

  /** Every stored entry, oldest use first. */
  async list(): Promise<LayerInfo[]> {
    let keys: string[];
    try {
      keys = await readdir(join(this.root, 'entries'));
    } catch {
      return [];
    }
    const out: LayerInfo[] = [];
    for (const key of keys) {
      if (!keySchema.safeParse(key).success) continue;
      const meta = await this.readMeta(key);
      if (meta === undefined) continue;
      const dir = this.entryDir(key);
      const lastUsedMs = await stat(join(dir, USED_FILE)).then((s) => s.mtimeMs).catch(() => Date.parse(meta.createdAt));
      out.push({ key, dir, path: this.layerPath(key), meta, sizeBytes: await dirBytes(dir), lastUsedMs, leased: await this.isLeased(key) });
    }
    return out.sort((a, b) => a.lastUsedMs - b.lastUsedMs || a.key.localeCompare(b.key));
  }

  /**
   * Removes entries until the store holds at most `maxSizeBytes` (least recently used first), or
   * every entry with `all`. Entries a live process holds a lease on are kept, and so are `keep`.
   * Removing an entry also removes the entries stacked on it, which could not be used without it.
   * Temp dirs of puts whose process is gone are removed too.
   */
  async prune(options: { maxSizeBytes?: number; all?: boolean; keep?: readonly string[]; signal?: AbortSignal } = {}): Promise<PruneResult> {
    const result: PruneResult = { removed: [], freedBytes: 0, tempDirsRemoved: await this.cleanTemp() };
    if (!(await exists(join(this.root, 'entries')))) return result;
    await using _lock = await this.lock(options.signal);
    const entries = await this.list();
    const keep = new Set(options.keep ?? []);
    let total = entries.reduce((sum, e) => sum + e.sizeBytes, 0);
    const limit = options.all === true ? 0 : (options.maxSizeBytes ?? this.maxSizeBytes);
    const gone = new Set<string>();
    for (const entry of entries) {
      if (total <= limit) break;
      if (gone.has(entry.key) || entry.leased || keep.has(entry.key)) continue;
      const doomed = [entry, ...dependentsOf(entry.key, entries)].filter((e) => !gone.has(e.key));
      if (doomed.some((e) => e.leased || keep.has(e.key))) continue;
      for (const victim of doomed) {
        await rm(victim.dir, { recursive: true, force: true });
        gone.add(victim.key);
        total -= victim.sizeBytes;
        result.freedBytes += victim.sizeBytes;
        result.removed.push({ key: victim.key, stage: victim.meta.stage, sizeBytes: victim.sizeBytes, why: victim === entry ? (options.all === true ? 'all entries' : 'least recently used') : `stacked on ${entry.key.slice(0, 12)}` });
      }
    }
    return result;
  }

  /** Removes temp dirs of puts whose process is gone (a crash or kill mid-put). */
  async cleanTemp(): Promise<number> {
    const tmp = join(this.root, 'tmp');
    let names: string[];
    try {
      names = await readdir(tmp);
    } catch {
      return 0;
    }
    let removed = 0;
    for (const name of names) {
      const dir = join(tmp, name);
      const owner = await readFile(join(dir, TEMP_OWNER_FILE), 'utf8').then((t) => JSON.parse(t) as { pid?: number; startTime?: string }).catch(() => undefined);
      let alive: boolean;
      if (owner === undefined || typeof owner.pid !== 'number') {
        // No owner.json: a put that was killed before writing it, or one that is about to rename
        // (it removes owner.json just before). The dir's name carries the put's pid: a dead one
        // abandoned it; otherwise only an old dir is abandoned.
        const pid = Number(/-(\d+)-[0-9a-f]{8}$/.exec(name)?.[1]);
        alive = Number.isInteger(pid) && pid > 0 && !isProcessRunning(pid) ? false : await stat(dir).then((s) => Date.now() - s.mtimeMs < TEMP_GRACE_MS).catch(() => false);
      } else {
        alive = isProcessRunning(owner.pid) && (owner.startTime === undefined || processStartTime(owner.pid) === owner.startTime);
      }
      if (!alive) {
        await rm(dir, { recursive: true, force: true });
        removed += 1;
      }
    }
    return removed;
  }

  private backingPath(backing: LayerBacking): string | undefined {
    if (backing.kind === 'layer') return this.layerPath(backing.key);
    if (backing.kind === 'file') return backing.path;
    return undefined;
  }

  private async readMeta(key: string): Promise<LayerMeta | undefined> {
    try {
      const parsed = metaSchema.safeParse(JSON.parse(await readFile(join(this.entryDir(key), META_FILE), 'utf8')));
      return parsed.success && parsed.data.key === key ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  }

  private indexPath(stage: string): string {
    if (!/^[A-Za-z0-9._-]+$/.test(stage)) throw new KibError('LAYER_STAGE_INVALID', `stage name '${stage}' must match [A-Za-z0-9._-]+`);
    return join(this.root, 'index', `${stage}.json`);
  }

  private async writeIndex(stage: string, key: string): Promise<void> {
    const path = this.indexPath(stage);
    await mkdir(join(this.root, 'index'), { recursive: true });
    const tmp = `${path}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify({ key, updatedAt: new Date().toISOString() })}\n`);
    await rename(tmp, path);
  }

  private async lock(signal?: AbortSignal): Promise<AsyncDisposable> {
    await mkdir(this.root, { recursive: true });
    return acquireLock(join(this.root, 'lock'), signal === undefined ? {} : { signal });
  }

  private async lease(key: string): Promise<() => Promise<void>> {
    const dir = join(this.entryDir(key), LEASES_DIR);
    await mkdir(dir, { recursive: true });
    const file = join(dir, `${process.pid}-${randomBytes(4).toString('hex')}`);
    await writeFile(file, `${JSON.stringify({ pid: process.pid, startTime: processStartTime(process.pid) })}\n`);
    return () => rm(file, { force: true });
  }

  private async isLeased(key: string): Promise<boolean> {
    const dir = join(this.entryDir(key), LEASES_DIR);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return false;
    }
    for (const name of names) {
      const lease = await readFile(join(dir, name), 'utf8').then((t) => JSON.parse(t) as { pid?: number; startTime?: string }).catch(() => undefined);
      if (lease === undefined || typeof lease.pid !== 'number') continue;
      if (isProcessRunning(lease.pid) && (lease.startTime === undefined || processStartTime(lease.pid) === lease.startTime)) return true;
      await rm(join(dir, name), { force: true });
    }
    return false;
  }

  private async discard(key: string, reason: 'corrupt' | 'broken-chain', message: string, releaseAll: () => Promise<void>): Promise<LayerLookup> {
    await this.removeWithDependents(key, releaseAll);
    return { status: 'miss', reason, message: `${message}; removed, it will be rebuilt` };
  }

  private async removeWithDependents(key: string, releaseAll: () => Promise<void>): Promise<void> {
    await releaseAll();
    await using _lock = await this.lock();
    const entries = await this.list();
    for (const dependent of dependentsOf(key, entries)) await rm(dependent.dir, { recursive: true, force: true });
    await rm(this.entryDir(key), { recursive: true, force: true });
  }
}

/** Entries whose backing chain passes through `key`. */
function dependentsOf(key: string, entries: readonly LayerInfo[]): LayerInfo[] {
  const byKey = new Map(entries.map((e) => [e.key, e]));
  const out: LayerInfo[] = [];
  for (const entry of entries) {
    let backing = entry.meta.backing;
    const seen = new Set<string>();
    while (backing.kind === 'layer' && !seen.has(backing.key)) {
      if (backing.key === key) {
        out.push(entry);
        break;
      }
      seen.add(backing.key);
      const next = byKey.get(backing.key);
      if (next === undefined) break;
      backing = next.meta.backing;
    }
  }
  return out;
}

async function backingFormat(path: string): Promise<'qcow2' | 'raw'> {
  const info = await run('qemu-img', ['info', '--output', 'json', '-U', path], { timeoutMs: 60_000 });
  const format = (JSON.parse(info.stdout) as { format?: string }).format;
  return format === 'raw' ? 'raw' : 'qcow2';
}

async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += await dirBytes(path);
    else total += await stat(path).then((s) => s.size).catch(() => 0);
  }
  return total;
}

/** Streams a file through SHA-256 (layers are hundreds of MB). */
async function sha256File(path: string, options: { signal?: AbortSignal } = {}): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path, { highWaterMark: 1024 * 1024 }), async function* (source: AsyncIterable<Buffer>) {
    for await (const chunk of source) hash.update(chunk);
  }, options.signal === undefined ? {} : { signal: options.signal });
  return hash.digest('hex');
}
