import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordBuildOwner, reapStaleWorkDirs } from '../../../src/pipeline/work-dirs.js';

describe('reapStaleWorkDirs', () => {
  let state: string;
  beforeAll(async () => {
    state = await mkdtemp(join(tmpdir(), 'kib-workdirs-'));
  });
  afterAll(() => rm(state, { recursive: true, force: true }));

  const makeBuild = async (id: string): Promise<string> => {
    const dir = join(state, 'builds', id);
    await mkdir(join(dir, 'work'), { recursive: true });
    await writeFile(join(dir, 'work', 'disk.qcow2'), Buffer.alloc(64 * 1024, 1));
    await writeFile(join(dir, 'events.jsonl'), '{}\n');
    return dir;
  };

  it('removes the work dir of a build whose kib is gone, keeps its logs, and leaves running and just-started builds alone', async () => {
    const gone = await makeBuild('gone');
    const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
    await new Promise((resolve) => child.on('exit', resolve));
    await writeFile(join(gone, 'owner.json'), JSON.stringify({ pid: child.pid, hostname: hostname(), buildId: 'gone', createdAt: '' }));
    const running = await makeBuild('running');
    await recordBuildOwner(running, 'running');
    const starting = await makeBuild('starting');
    const ownerless = await makeBuild('ownerless');
    const old = new Date(Date.now() - 3_600_000);
    await utimes(join(ownerless, 'work'), old, old);

    const reaped = await reapStaleWorkDirs(state);
    expect(reaped.map((r) => r.path).sort()).toEqual([join(gone, 'work'), join(ownerless, 'work')].sort());
    expect(reaped.every((r) => r.sizeBytes >= 64 * 1024)).toBe(true);
    expect(await readdir(gone)).toEqual(['events.jsonl', 'owner.json']);
    expect(await readdir(running)).toContain('work');
    expect(await readdir(starting)).toContain('work');
  });
});
