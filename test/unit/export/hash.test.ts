import { createHash } from 'node:crypto';
import { chmod, mkdir, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCancelled } from '../../../src/core/errors.js';
import { hashTree, renderSha256Sums, sha256File, writeSha256Sums } from '../../../src/export/index.js';
import { run } from '../../../src/process/index.js';
import { makeTempDir } from './support.js';

describe('sha256File', () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  beforeAll(async () => {
    tmp = await makeTempDir('hash');
  });
  afterAll(async () => tmp.remove());

  it('matches sha256sum on a multi-chunk file', async () => {
    const path = join(tmp.dir, 'data.bin');
    await writeFile(path, Buffer.alloc(5 * 1024 * 1024 + 3, 0x42));
    const expected = (await run('sha256sum', [path])).stdout.split(' ')[0];
    expect(await sha256File(path)).toBe(expected);
  });

  it('throws CancelledError when the signal has fired', async () => {
    const path = join(tmp.dir, 'data.bin');
    const error = await sha256File(path, { signal: AbortSignal.abort() }).catch((caught: unknown) => caught);
    expect(isCancelled(error)).toBe(true);
  });
});

describe('SHA256SUMS', () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  beforeAll(async () => {
    tmp = await makeTempDir('sums');
  });
  afterAll(async () => tmp.remove());

  it('is accepted by sha256sum -c, sorted, with names relative to the directory', async () => {
    const files = { 'z.qcow2': 'disk', 'manifest.json': '{}\n', 'a b.raw': 'raw with a space' };
    const artifacts = [];
    for (const [name, content] of Object.entries(files)) {
      await writeFile(join(tmp.dir, name), content);
      artifacts.push({ path: name === 'z.qcow2' ? join(tmp.dir, name) : name, sha256: createHash('sha256').update(content).digest('hex') });
    }
    const sums = await writeSha256Sums(tmp.dir, artifacts);
    expect(sums.kind).toBe('sha256sums');
    expect(sums.path).toBe(join(tmp.dir, 'SHA256SUMS'));
    const check = await run('sha256sum', ['--strict', '-c', 'SHA256SUMS'], { cwd: tmp.dir });
    expect(check.stdout).toBe('a b.raw: OK\nmanifest.json: OK\nz.qcow2: OK\n');

    await writeFile(join(tmp.dir, 'z.qcow2'), 'tampered');
    const failed = await run('sha256sum', ['-c', 'SHA256SUMS'], { cwd: tmp.dir, allowFailure: true });
    expect(failed.exitCode).toBe(1);
    expect(failed.stdout).toContain('z.qcow2: FAILED');
  });

  it('uses two spaces and byte order, and refuses names sha256sum would escape or files outside', async () => {
    const hex = 'ab'.repeat(32);
    expect(renderSha256Sums([{ file: 'b', sha256: hex }, { file: 'B', sha256: hex }, { file: 'a', sha256: hex }])).toBe(`${hex}  B\n${hex}  a\n${hex}  b\n`);
    expect(() => renderSha256Sums([{ file: 'a\nb', sha256: hex }])).toThrow(/plain relative file name/);
    expect(() => renderSha256Sums([{ file: 'a', sha256: 'xyz' }])).toThrow(/64 lowercase hex/);
    expect(() => renderSha256Sums([{ file: 'a', sha256: hex }, { file: 'a', sha256: hex }])).toThrow(/twice/);
    await expect(writeSha256Sums(tmp.dir, [{ path: '/etc/passwd', sha256: hex }])).rejects.toThrow(/not inside/);
  });
});

describe('hashTree', () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  beforeAll(async () => {
    tmp = await makeTempDir('tree');
  });
  afterAll(async () => tmp.remove());

  async function makeTree(root: string, order: 'forward' | 'reverse'): Promise<void> {
    const files: [string, string][] = [
      ['site.yml', '- hosts: all\n'],
      ['roles/base/tasks/main.yml', '- name: x\n'],
      ['roles/seal/tasks/main.yml', '- name: y\n'],
    ];
    for (const [rel, content] of order === 'forward' ? files : [...files].reverse()) {
      await mkdir(join(root, rel, '..'), { recursive: true });
      await writeFile(join(root, rel), content);
    }
  }

  it('depends on paths, contents, symlink targets and the executable bit, not on mtimes, order or empty dirs', async () => {
    const a = join(tmp.dir, 'a');
    const b = join(tmp.dir, 'b');
    await makeTree(a, 'forward');
    await makeTree(b, 'reverse');
    await mkdir(join(b, 'empty'));
    await utimes(join(b, 'site.yml'), new Date(0), new Date(0));
    const digest = await hashTree(a);
    expect(digest).toMatch(/^[0-9a-f]{64}$/);
    expect(await hashTree(b)).toBe(digest);

    await writeFile(join(b, 'roles/seal/tasks/main.yml'), '- name: z\n');
    const changedContent = await hashTree(b);
    expect(changedContent).not.toBe(digest);

    await chmod(join(b, 'site.yml'), 0o755);
    const changedMode = await hashTree(b);
    expect(changedMode).not.toBe(changedContent);

    await symlink('site.yml', join(b, 'link.yml'));
    expect(await hashTree(b)).not.toBe(changedMode);
  });

  it('tells a renamed file apart from the original', async () => {
    const c = join(tmp.dir, 'c');
    await mkdir(c);
    await writeFile(join(c, 'one.yml'), 'same');
    const before = await hashTree(c);
    await run('mv', [join(c, 'one.yml'), join(c, 'two.yml')]);
    expect(await hashTree(c)).not.toBe(before);
  });

  it('rejects a path that is not a directory', async () => {
    await writeFile(join(tmp.dir, 'file'), 'x');
    await expect(hashTree(join(tmp.dir, 'file'))).rejects.toThrow(/not a directory/);
  });
});
