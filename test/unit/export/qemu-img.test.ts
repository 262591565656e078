import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandError, isCancelled } from '../../../src/core/errors.js';
import {
  convertDisk,
  parseQemuImgInfo,
  parseQemuImgProgress,
  qemuImgConvertArgs,
  qemuImgInfoArgs,
} from '../../../src/export/index.js';
import { run } from '../../../src/process/index.js';
import type { KibEvent } from '../../../src/report/events.js';
import { makeOverlayDisk, makeTempDir } from './support.js';

describe('qemuImgConvertArgs', () => {
  it('compressed qcow2: explicit formats, -c, pinned compat, no -W', () => {
    expect(qemuImgConvertArgs({ source: '/w/overlay.qcow2', sourceFormat: 'qcow2', target: '/s/a.qcow2', targetFormat: 'qcow2', compress: true })).toEqual([
      'convert', '-f', 'qcow2', '-O', 'qcow2', '-c', '-o', 'compat=1.1', '/w/overlay.qcow2', '/s/a.qcow2',
    ]);
  });

  it('uncompressed qcow2 with progress', () => {
    expect(qemuImgConvertArgs({ source: '/w/o.qcow2', sourceFormat: 'qcow2', target: '/s/a.qcow2', targetFormat: 'qcow2', compress: false, progress: true })).toEqual([
      'convert', '-p', '-f', 'qcow2', '-O', 'qcow2', '-o', 'compat=1.1', '/w/o.qcow2', '/s/a.qcow2',
    ]);
  });

  it('raw never gets -c or qcow2 options; relative names cannot be read as protocols', () => {
    expect(qemuImgConvertArgs({ source: 'nbd:x.qcow2', sourceFormat: 'qcow2', target: 'out.raw', targetFormat: 'raw', compress: true })).toEqual([
      'convert', '-f', 'qcow2', '-O', 'raw', './nbd:x.qcow2', './out.raw',
    ]);
  });

  it('info as JSON, with and without a format', () => {
    expect(qemuImgInfoArgs('/s/a.qcow2')).toEqual(['info', '--output', 'json', '/s/a.qcow2']);
    expect(qemuImgInfoArgs('/s/a.raw', 'raw')).toEqual(['info', '--output', 'json', '-f', 'raw', '/s/a.raw']);
  });
});

describe('parsers', () => {
  it('reads the last percentage of a carriage-return-redrawn progress line', () => {
    expect(parseQemuImgProgress('    (0.00/100%)\r    (1.04/100%)\r    (37.50/100%)\r')).toBe(37.5);
    expect(parseQemuImgProgress('    (100.00/100%)')).toBe(100);
    expect(parseQemuImgProgress('qemu-img: warning')).toBeUndefined();
  });

  it('reads format, sizes and the backing file from qemu-img info JSON', () => {
    const info = parseQemuImgInfo(
      JSON.stringify({ 'virtual-size': 67108864, filename: 'ov.qcow2', format: 'qcow2', 'actual-size': 4460544, 'backing-filename': 'base.qcow2' }),
    );
    expect(info).toEqual({ format: 'qcow2', virtualSizeBytes: 67108864, actualSizeBytes: 4460544, backingFile: 'base.qcow2' });
    expect(parseQemuImgInfo('{"format":"raw","virtual-size":1}').backingFile).toBeUndefined();
    expect(() => parseQemuImgInfo('not json')).toThrow(/not JSON/);
    expect(() => parseQemuImgInfo('{"format":"raw"}')).toThrow(/virtual-size/);
  });
});

describe('convertDisk', () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let disk: Awaited<ReturnType<typeof makeOverlayDisk>>;
  beforeAll(async () => {
    tmp = await makeTempDir('convert');
    disk = await makeOverlayDisk(tmp.dir);
  });
  afterAll(async () => tmp.remove());

  it('flattens an overlay into a standalone compressed qcow2 with the same guest-visible content', async () => {
    const events: KibEvent[] = [];
    const target = join(tmp.dir, 'flat.qcow2');
    const result = await convertDisk(
      { source: disk.overlay, sourceFormat: 'qcow2', target, targetFormat: 'qcow2', compress: true },
      { reporter: { emit: (event) => events.push(event) }, sourceVirtualSizeBytes: disk.virtualSizeBytes },
    );
    expect(result).toEqual({ path: target, format: 'qcow2', virtualSizeBytes: disk.virtualSizeBytes });
    const info = JSON.parse((await run('qemu-img', ['info', '--output', 'json', target])).stdout) as Record<string, unknown>;
    expect(info['backing-filename']).toBeUndefined();
    // Identical contents, even with the base gone from the chain.
    const compare = await run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', disk.overlay, target], { allowFailure: true });
    expect(compare.exitCode).toBe(0);
    const progress = events.filter((event) => event.type === 'progress');
    // Each \r-redrawn percentage arrives as it is drawn, not all at once at the end.
    expect(progress.length).toBeGreaterThan(2);
    expect(progress.at(-1)).toMatchObject({ phase: 'export', label: 'qcow2', done: disk.virtualSizeBytes, total: disk.virtualSizeBytes, unit: 'bytes' });
  });

  it('is deterministic: converting twice gives the same bytes', async () => {
    const a = join(tmp.dir, 'a.qcow2');
    const b = join(tmp.dir, 'b.qcow2');
    await convertDisk({ source: disk.overlay, sourceFormat: 'qcow2', target: a, targetFormat: 'qcow2', compress: true });
    await convertDisk({ source: disk.overlay, sourceFormat: 'qcow2', target: b, targetFormat: 'qcow2', compress: true });
    const sums = (await run('sha256sum', [a, b])).stdout.split('\n').map((line) => line.split(' ')[0]);
    expect(sums[0]).toBe(sums[1]);
  });

  it('writes raw of the virtual size', async () => {
    const target = join(tmp.dir, 'flat.raw');
    const result = await convertDisk({ source: disk.overlay, sourceFormat: 'qcow2', target, targetFormat: 'raw', compress: true });
    expect(result.format).toBe('raw');
    expect(result.virtualSizeBytes).toBe(disk.virtualSizeBytes);
  });

  it('fails with CommandError naming qemu-img when the source is missing', async () => {
    const error = await convertDisk({ source: join(tmp.dir, 'missing.qcow2'), sourceFormat: 'qcow2', target: join(tmp.dir, 'x.qcow2'), targetFormat: 'qcow2', compress: true }).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(CommandError);
    expect((error as CommandError).command[0]).toBe('qemu-img');
    expect((error as CommandError).stderrTail).toMatch(/missing\.qcow2/);
  });

  it('is cancelled by its signal', async () => {
    const error = await convertDisk(
      { source: disk.overlay, sourceFormat: 'qcow2', target: join(tmp.dir, 'cancelled.qcow2'), targetFormat: 'qcow2', compress: true },
      { signal: AbortSignal.abort() },
    ).catch((caught: unknown) => caught);
    expect(isCancelled(error)).toBe(true);
    expect(await readdir(tmp.dir)).not.toContain('cancelled.qcow2');
  });
});
