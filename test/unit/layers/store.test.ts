import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, open, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquireLock, LayerStore, type LayerLookup } from '../../../src/layers/index.js';
import { run } from '../../../src/process/index.js';
import { REPO_ROOT } from '../../support/kib-cli.js';

const key = (n: number): string => n.toString(16).padStart(64, '0');

/** A small qcow2 with some data, optionally on a backing file. */
async function makeQcow2(path: string, options: { backing?: string; pattern?: number; megabytes?: number } = {}): Promise<string> {
  const args = ['create', '-q', '-f', 'qcow2'];
  if (options.backing !== undefined) args.push('-b', options.backing, '-F', 'qcow2');
  args.push(path, '64M');
  await run('qemu-img', args);
  await run('qemu-io', ['-f', 'qcow2', '-c', `write -P ${options.pattern ?? 0xab} 0 ${options.megabytes ?? 1}M`, path]);
  return path;
}

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((resolve) => child.on('exit', resolve));
  return child.pid as number;
}

function expectMiss(lookup: LayerLookup, reason: string): string {
  expect(lookup.status).toBe('miss');
  if (lookup.status !== 'miss') throw new Error('unreachable');
  expect(lookup.reason).toBe(reason);
  return lookup.message;
}

describe('LayerStore', () => {
  let dir: string;
  let source: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kib-layers-'));
    source = await makeQcow2(join(dir, 'source.qcow2'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  const freshStore = async (name: string, maxSizeBytes?: number): Promise<LayerStore> => {
    const root = join(dir, name);
    await rm(root, { recursive: true, force: true });
    return new LayerStore(root, maxSizeBytes === undefined ? {} : { maxSizeBytes });
  };

  it('stores a layer with its key document and meta, and a get verifies and returns it', async () => {
    const store = await freshStore('basic');
    const entry = await store.put({ key: key(1), stage: 'os', sourcePath: source, keyDocument: { stage: 'os', vars: { a: 1 } }, backing: { kind: 'none' } });
    expect(await readdir(entry.dir)).toEqual(expect.arrayContaining(['layer.qcow2', 'key.json', 'meta.json']));
    expect(JSON.parse(await readFile(join(entry.dir, 'key.json'), 'utf8'))).toEqual({ stage: 'os', vars: { a: 1 } });
    expect(entry.meta).toMatchObject({ key: key(1), stage: 'os', sizeBytes: (await stat(source)).size, backing: { kind: 'none' } });
    expect(await store.latestKey('os')).toBe(key(1));
    const lookup = await store.get(key(1));
    expect(lookup.status).toBe('hit');
    if (lookup.status === 'hit') await lookup.release();
    expectMiss(await store.get(key(2)), 'absent');
  });

  it("rewrites a layer's backing file to its backing entry in the store", async () => {
    const store = await freshStore('chain');
    const lower = await store.put({ key: key(1), stage: 'os', sourcePath: source, keyDocument: {}, backing: { kind: 'none' } });
    // Made on a backing file outside the store, as a build's work overlay is.
    const upperSource = await makeQcow2(join(dir, 'upper.qcow2'), { backing: source, pattern: 0xcd });
    const upper = await store.put({ key: key(2), stage: 'runtime', sourcePath: upperSource, keyDocument: {}, backing: { kind: 'layer', key: key(1) } });
    const info = JSON.parse((await run('qemu-img', ['info', '--output', 'json', upper.path])).stdout) as { 'backing-filename'?: string };
    expect(info['backing-filename']).toBe(lower.path);
    const lookup = await store.get(key(2));
    expect(lookup.status).toBe('hit');
    if (lookup.status === 'hit') await lookup.release();
  });

  it('a put killed midway leaves only a temp dir, which is ignored and cleaned by the next put', async () => {
    const store = await freshStore('crash');
    // What a put killed before its rename leaves: a temp dir owned by a process that is gone.
    const crashed = join(store.root, 'tmp', `${key(7).slice(0, 16)}-crashed`);
    await mkdir(crashed, { recursive: true });
    await writeFile(join(crashed, 'owner.json'), JSON.stringify({ pid: await deadPid() }));
    await writeFile(join(crashed, 'layer.qcow2'), Buffer.alloc(4096, 1));
    expect(await store.list()).toEqual([]);
    expectMiss(await store.get(key(7)), 'absent');
    await store.put({ key: key(8), stage: 'os', sourcePath: source, keyDocument: {}, backing: { kind: 'none' } });
    expect(await readdir(join(store.root, 'tmp'))).toEqual([]);
    expect((await store.list()).map((e) => e.key)).toEqual([key(8)]);
  });

  it('a put killed by SIGKILL during the copy leaves no entry, and the same key can be stored afterwards', async () => {
    const store = await freshStore('kill');
    const big = await makeQcow2(join(dir, 'big.qcow2'), { megabytes: 48 });
    const child = spawn(process.execPath, [join(REPO_ROOT, 'test/fixtures/programs/layer-put.mjs'), store.root, key(9), big], { stdio: 'ignore' });
    // Kill as soon as the put has made its temp dir.
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const names = await readdir(join(store.root, 'tmp')).catch(() => []);
      if (names.length > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    child.kill('SIGKILL');
    await new Promise((resolve) => child.on('exit', resolve));
    const stored = await store.has(key(9));
    // The kill may land after the rename; what must never happen is a half-written entry.
    if (stored) expect((await store.get(key(9))).status).toBe('hit');
    else expectMiss(await store.get(key(9)), 'absent');
    await store.put({ key: key(9), stage: 'os', sourcePath: big, keyDocument: {}, backing: { kind: 'none' } });
    const lookup = await store.get(key(9));
    expect(lookup.status).toBe('hit');
    if (lookup.status === 'hit') await lookup.release();
    expect(await readdir(join(store.root, 'tmp'))).toEqual([]);
  });

  it('two processes storing the same key at once give one intact entry', async () => {
    const store = await freshStore('concurrent');
    const runChild = (): Promise<{ code: number | null; out: string }> =>
      new Promise((resolve) => {
        const child = spawn(process.execPath, [join(REPO_ROOT, 'test/fixtures/programs/layer-put.mjs'), store.root, key(3), source], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        child.stdout.on('data', (c: Buffer) => (out += c.toString()));
        child.stderr.on('data', (c: Buffer) => (out += c.toString()));
        child.on('exit', (code) => resolve({ code, out }));
      });
    const results = await Promise.all([runChild(), runChild(), runChild()]);
    for (const r of results) expect(r.code, r.out).toBe(0);
    expect((await store.list()).map((e) => e.key)).toEqual([key(3)]);
    const lookup = await store.get(key(3));
    expect(lookup.status).toBe('hit');
    if (lookup.status === 'hit') await lookup.release();
    expect(await readdir(join(store.root, 'tmp'))).toEqual([]);
    await expect(stat(join(store.root, 'lock'))).rejects.toThrow();
  });

  it('a layer whose bytes changed is a miss that says so, and is removed', async () => {
    const store = await freshStore('corrupt');
    const entry = await store.put({ key: key(4), stage: 'os', sourcePath: source, keyDocument: {}, backing: { kind: 'none' } });
    const handle = await open(entry.path, 'r+');
    await handle.write(Buffer.from([0x5a]), 0, 1, 300_000);
    await handle.close();
    const message = expectMiss(await store.get(key(4)), 'corrupt');
    expect(message).toContain('sha256');
    expect(message).toContain('rebuilt');
    expect(await store.has(key(4))).toBe(false);
  });

  it('a layer qemu-img check rejects is a miss even when its recorded sha256 matches', async () => {
    const store = await freshStore('check');
    const entry = await store.put({ key: key(5), stage: 'os', sourcePath: source, keyDocument: {}, backing: { kind: 'none' } });
    // Damage the qcow2 header's L1 table offset, then record the damaged file's own hash, so
    // only the structural check can notice.
    const handle = await open(entry.path, 'r+');
    await handle.write(Buffer.from([0xff, 0xff, 0xff, 0xff]), 0, 4, 40);
    await handle.close();
    const meta = JSON.parse(await readFile(join(entry.dir, 'meta.json'), 'utf8')) as Record<string, unknown>;
    meta.sha256 = (await run('sha256sum', [entry.path])).stdout.split(' ')[0];
    await writeFile(join(entry.dir, 'meta.json'), JSON.stringify(meta));
    const message = expectMiss(await store.get(key(5)), 'corrupt');
    expect(message).toContain('qemu-img check');
    expect(await store.has(key(5))).toBe(false);
  });

  it('a layer whose backing entry is gone is a miss (broken chain), never a crash', async () => {
    const store = await freshStore('broken');
    await store.put({ key: key(1), stage: 'os', sourcePath: source, keyDocument: {}, backing: { kind: 'none' } });
    const upperSource = await makeQcow2(join(dir, 'upper2.qcow2'), { backing: source, pattern: 0xcd });
    await store.put({ key: key(2), stage: 'runtime', sourcePath: upperSource, keyDocument: {}, backing: { kind: 'layer', key: key(1) } });
    await rm(store.entryDir(key(1)), { recursive: true });
    const message = expectMiss(await store.get(key(2)), 'broken-chain');
    expect(message).toContain(key(1).slice(0, 12));
    expect(await store.has(key(2))).toBe(false);
    // A backing base image that disappeared is the same kind of miss.
    const base = await makeQcow2(join(dir, 'base-gone.qcow2'));
    const onBase = await makeQcow2(join(dir, 'on-base.qcow2'), { backing: base });
    await store.put({ key: key(6), stage: 'os', sourcePath: onBase, keyDocument: {}, backing: { kind: 'file', path: base } });
    await rm(base);
    expectMiss(await store.get(key(6)), 'broken-chain');
  });

  it('prunes least recently used entries down to the size cap, with what is stacked on them, and keeps leased ones', async () => {
    const store = await freshStore('prune');
    const a = await store.put({ key: key(1), stage: 'os', sourcePath: source, keyDocument: {}, backing: { kind: 'none' } });
    const upperSource = await makeQcow2(join(dir, 'upper3.qcow2'), { backing: source, pattern: 0xcd });
    await store.put({ key: key(2), stage: 'runtime', sourcePath: upperSource, keyDocument: {}, backing: { kind: 'layer', key: key(1) } });
    await store.put({ key: key(3), stage: 'os', sourcePath: source, keyDocument: {}, backing: { kind: 'none' } });
    // Oldest use: key 1 (and key 2 on it), then key 3.
    const at = (s: number): Date => new Date(Date.now() - s * 1000);
    await utimes(join(a.dir, 'used'), at(300), at(300));
    await utimes(join(store.entryDir(key(2)), 'used'), at(100), at(100));
    await utimes(join(store.entryDir(key(3)), 'used'), at(200), at(200));
    const listed = await store.list();
    expect(listed.map((e) => e.key)).toEqual([key(1), key(3), key(2)]);
    const one = listed.find((e) => e.key === key(3))?.sizeBytes ?? 0;

    const pruned = await store.prune({ maxSizeBytes: one + 1 });
    // Removing key 1 takes key 2 with it (unusable without its backing); key 3 then fits.
    expect(pruned.removed.map((r) => r.key).sort()).toEqual([key(1), key(2)]);
    expect((await store.list()).map((e) => e.key)).toEqual([key(3)]);

    const held = await store.get(key(3));
    expect(held.status).toBe('hit');
    expect((await store.prune({ all: true })).removed).toEqual([]);
    if (held.status === 'hit') await held.release();
    expect((await store.prune({ all: true })).removed.map((r) => r.key)).toEqual([key(3)]);
  });

  it('the size cap is applied after every put, never removing the new entry', async () => {
    const store = await freshStore('cap', 1);
    await store.put({ key: key(1), stage: 'os', sourcePath: source, keyDocument: {}, backing: { kind: 'none' } });
    await store.put({ key: key(2), stage: 'os', sourcePath: source, keyDocument: {}, backing: { kind: 'none' } });
    expect((await store.list()).map((e) => e.key)).toEqual([key(2)]);
  });
});

describe('acquireLock', () => {
  it('breaks a lock whose owner is gone, and waits for a live one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kib-lock-'));
    try {
      const path = join(dir, 'lock');
      await writeFile(path, JSON.stringify({ pid: await deadPid(), acquiredAt: new Date().toISOString(), hostname: (await import('node:os')).hostname() }));
      const first = await acquireLock(path, { timeoutMs: 2_000 });
      let secondGot = false;
      const second = acquireLock(path, { timeoutMs: 5_000 }).then((lock) => {
        secondGot = true;
        return lock;
      });
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(secondGot).toBe(false);
      await first.release();
      await (await second).release();
      expect(secondGot).toBe(true);
      await expect(stat(path)).rejects.toThrow();
      // A live holder that never releases: the waiter gives up at its deadline, naming the holder.
      const held = await acquireLock(path);
      await expect(acquireLock(path, { timeoutMs: 300 })).rejects.toThrow(`held by pid ${process.pid}`);
      await held.release();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
