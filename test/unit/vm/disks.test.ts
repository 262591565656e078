import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KibError } from '../../../src/core/errors.js';
import { run } from '../../../src/process/index.js';
import { createOverlay, parseQemuImgInfo, qemuImgInfo, qemuImgOverlayArgs } from '../../../src/vm/index.js';
import { tempDir } from '../process/helpers.js';

const MiB = 1024 * 1024;

describe('qemuImgOverlayArgs', () => {
  it('always names the backing format and adds a size only when given', () => {
    expect(qemuImgOverlayArgs({ basePath: '/c/base.qcow2', baseFormat: 'qcow2', overlayPath: '/w/disk.qcow2', sizeBytes: undefined })).toEqual([
      'create',
      '-q',
      '-f',
      'qcow2',
      '-F',
      'qcow2',
      '-b',
      '/c/base.qcow2',
      '/w/disk.qcow2',
    ]);
    expect(qemuImgOverlayArgs({ basePath: '/c/base.raw', baseFormat: 'raw', overlayPath: '/w/disk.qcow2', sizeBytes: 21474836480 })).toEqual([
      'create',
      '-q',
      '-f',
      'qcow2',
      '-F',
      'raw',
      '-b',
      '/c/base.raw',
      '/w/disk.qcow2',
      '21474836480',
    ]);
  });
});

describe('createOverlay and qemuImgInfo', () => {
  it('grows the overlay beyond the base and records the base as backing file', async () => {
    const dir = tempDir('overlay');
    const basePath = join(dir, 'base.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', basePath, String(64 * MiB)]);
    const overlayPath = join(dir, 'work', 'disk.qcow2');
    const disk = await createOverlay({ basePath, baseFormat: 'qcow2', overlayPath, sizeBytes: 128 * MiB });
    expect(disk).toEqual({ path: overlayPath, format: 'qcow2', virtualSizeBytes: 128 * MiB });
    const info = await qemuImgInfo(overlayPath);
    expect(info.format).toBe('qcow2');
    expect(info.virtualSizeBytes).toBe(128 * MiB);
    expect(info.backingFile).toBe(basePath);
    expect(info.actualSizeBytes).toBeGreaterThan(0);
    expect(info.actualSizeBytes).toBeLessThan(4 * MiB);
  });

  it('keeps the base size when the requested size is not larger (no shrinking)', async () => {
    const dir = tempDir('overlay-small');
    const basePath = join(dir, 'base.raw');
    await run('qemu-img', ['create', '-q', '-f', 'raw', basePath, String(64 * MiB)]);
    const disk = await createOverlay({ basePath, baseFormat: 'raw', overlayPath: join(dir, 'disk.qcow2'), sizeBytes: 32 * MiB });
    expect(disk.virtualSizeBytes).toBe(64 * MiB);
    const info = await qemuImgInfo(disk.path);
    expect(info.virtualSizeBytes).toBe(64 * MiB);
    expect(info.backingFile).toBe(basePath);
    expect((await qemuImgInfo(basePath)).backingFile).toBeUndefined();
  });

  it('refuses a base whose real format differs from the declared one', async () => {
    const dir = tempDir('overlay-format');
    const basePath = join(dir, 'base.img');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', basePath, String(MiB)]);
    const error = await createOverlay({ basePath, baseFormat: 'raw', overlayPath: join(dir, 'o.qcow2') }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KibError);
    expect((error as KibError).message).toContain('is qcow2, expected raw');
  });
});

describe('parseQemuImgInfo', () => {
  it('reads the fields qemu-img prints and prefers the full backing path', () => {
    const json = JSON.stringify({
      'virtual-size': 21474836480,
      filename: 'disk.qcow2',
      format: 'qcow2',
      'actual-size': 200704,
      'backing-filename': 'base.qcow2',
      'full-backing-filename': '/cache/base.qcow2',
      'backing-filename-format': 'qcow2',
    });
    expect(parseQemuImgInfo(json, 'disk.qcow2')).toEqual({
      format: 'qcow2',
      virtualSizeBytes: 21474836480,
      actualSizeBytes: 200704,
      backingFile: '/cache/base.qcow2',
    });
  });

  it('rejects output that is not qemu-img JSON', () => {
    expect(() => parseQemuImgInfo('not json', 'x')).toThrow(/did not print JSON/);
    expect(() => parseQemuImgInfo('{"filename":"x"}', 'x')).toThrow(/lacks format or virtual-size/);
  });
});
