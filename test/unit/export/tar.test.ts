import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { paxRecord, renderTarHeader, TAR_END, tarPadding, type TarEntry } from '../../../src/export/index.js';
import { run } from '../../../src/process/index.js';
import { makeTempDir } from './support.js';

const base = { uid: 107, gid: 107, mtimeSec: 1_788_000_000, mode: 0o444 };

function archive(entries: { entry: TarEntry; content?: Buffer }[]): Buffer {
  const parts: Buffer[] = [];
  for (const { entry, content } of entries) {
    parts.push(renderTarHeader(entry));
    if (content !== undefined) parts.push(content, tarPadding(content.length));
  }
  parts.push(TAR_END);
  return Buffer.concat(parts);
}

describe('renderTarHeader', () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  beforeAll(async () => {
    tmp = await makeTempDir('tar');
  });
  afterAll(async () => tmp.remove());

  it('writes a ustar block GNU tar lists with our modes, owners, sizes and mtime', async () => {
    const content = Buffer.from('hello disk\n');
    const path = join(tmp.dir, 'plain.tar');
    await writeFile(
      path,
      archive([
        { entry: { ...base, name: 'disk', type: 'directory', mode: 0o555, sizeBytes: 0 } },
        { entry: { ...base, name: 'disk/a.qcow2', type: 'file', sizeBytes: content.length }, content },
      ]),
    );
    const listing = await run('tar', ['--numeric-owner', '--full-time', '-tvf', path], { env: { TZ: 'UTC' } });
    expect(listing.stdout).toBe(
      'dr-xr-xr-x 107/107           0 2026-08-29 10:40:00 disk/\n' + '-r--r--r-- 107/107          11 2026-08-29 10:40:00 disk/a.qcow2\n',
    );
    const extracted = await run('tar', ['-xOf', path, 'disk/a.qcow2']);
    expect(extracted.stdout).toBe('hello disk\n');
  });

  it('computes the checksum over the block with its own field as spaces', () => {
    const block = renderTarHeader({ ...base, name: 'x', type: 'file', sizeBytes: 1 });
    expect(block.length).toBe(512);
    const stored = parseInt(block.subarray(148, 154).toString('ascii'), 8);
    const copy = Buffer.from(block);
    copy.fill(0x20, 148, 156);
    let sum = 0;
    for (const byte of copy) sum += byte;
    expect(stored).toBe(sum);
    expect(block.subarray(257, 265).toString('latin1')).toBe('ustar\u000000');
  });

  it('splits long names into prefix and name, and falls back to a PAX path record', async () => {
    const mid = `${'d'.repeat(120)}/${'f'.repeat(90)}`;
    const long = `${'x'.repeat(80)}/${'y'.repeat(130)}`;
    expect(renderTarHeader({ ...base, name: mid, type: 'file', sizeBytes: 0 }).length).toBe(512);
    expect(renderTarHeader({ ...base, name: long, type: 'file', sizeBytes: 0 }).length).toBe(512 * 3);
    const path = join(tmp.dir, 'long.tar');
    await writeFile(
      path,
      archive([
        { entry: { ...base, name: mid, type: 'file', sizeBytes: 0 }, content: Buffer.alloc(0) },
        { entry: { ...base, name: long, type: 'file', sizeBytes: 0 }, content: Buffer.alloc(0) },
      ]),
    );
    const listing = await run('tar', ['-tf', path]);
    expect(listing.stdout).toBe(`${mid}\n${long}\n`);
  });

  it('records sizes of 8 GiB and more in a PAX size record that GNU tar reads', async () => {
    const size = 8 * 1024 ** 3 + 4097;
    const header = renderTarHeader({ ...base, name: 'disk/huge.raw', type: 'file', sizeBytes: size });
    expect(header.length).toBe(512 * 3);
    expect(header.subarray(156, 157).toString()).toBe('x');
    expect(header.subarray(512, 1024).toString('utf8')).toContain(`size=${size}\n`);
    // The archive ends after the header: tar lists the entry (reading the size from PAX), then
    // reports the missing content.
    const path = join(tmp.dir, 'huge.tar');
    await writeFile(path, Buffer.concat([header, Buffer.alloc(4096)]));
    const listing = await run('tar', ['--numeric-owner', '-tvf', path], { allowFailure: true });
    expect(listing.stdout).toMatch(new RegExp(`^-r--r--r-- 107/107 +${size} .* disk/huge\\.raw\\n$`));
  });

  it('rejects names that escape the archive and values that do not fit', () => {
    expect(() => renderTarHeader({ ...base, name: '/etc/passwd', type: 'file', sizeBytes: 0 })).toThrow(/relative/);
    expect(() => renderTarHeader({ ...base, name: 'a/../../b', type: 'file', sizeBytes: 0 })).toThrow(/relative/);
    expect(() => renderTarHeader({ ...base, uid: 8 ** 7, name: 'a', type: 'file', sizeBytes: 0 })).toThrow(/uid/);
    expect(() => renderTarHeader({ ...base, name: 'a', type: 'file', sizeBytes: -1 })).toThrow(/size/);
  });

  it('makes PAX records whose length prefix counts the whole record', () => {
    for (const value of ['1', 'x'.repeat(91), 'x'.repeat(92), 'x'.repeat(993)]) {
      const record = paxRecord('path', value);
      const declared = Number(record.split(' ')[0]);
      expect(Buffer.byteLength(record)).toBe(declared);
      expect(record.endsWith(`path=${value}\n`)).toBe(true);
    }
  });
});
