import { mkdir } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { KibError } from '../core/errors.js';
import type { DiskImage } from '../core/types.js';
import { run } from '../process/index.js';

export interface QemuImgInfo {
  format: string;
  virtualSizeBytes: number;
  /** Bytes the file takes on disk (sparse files and qcow2 take less than their virtual size). */
  actualSizeBytes: number;
  /** As recorded in the image (absolute when the image was created with an absolute path). */
  backingFile: string | undefined;
}

export interface OverlaySpec {
  basePath: string;
  baseFormat: 'qcow2' | 'raw';
  overlayPath: string;
  /** The overlay's virtual size; ignored unless larger than the base's (qcow2 cannot shrink here). */
  sizeBytes?: number;
  signal?: AbortSignal;
}

/** argv for a qcow2 overlay on a base; the backing format is always given (qemu-img insists). */
export function qemuImgOverlayArgs(options: {
  basePath: string;
  baseFormat: 'qcow2' | 'raw';
  overlayPath: string;
  sizeBytes: number | undefined;
}): string[] {
  return [
    'create',
    '-q',
    '-f',
    'qcow2',
    '-F',
    options.baseFormat,
    '-b',
    options.basePath,
    options.overlayPath,
    ...(options.sizeBytes === undefined ? [] : [String(options.sizeBytes)]),
  ];
}

/** A qcow2 overlay that writes go to, leaving the (cached, shared) base untouched. */
export async function createOverlay(spec: OverlaySpec): Promise<DiskImage> {
  const basePath = isAbsolute(spec.basePath) ? spec.basePath : resolve(spec.basePath);
  const base = await qemuImgInfo(basePath, spec.signal);
  if (base.format !== spec.baseFormat) {
    throw new KibError('DISK_FORMAT_MISMATCH', `${basePath} is ${base.format}, expected ${spec.baseFormat}`);
  }
  const grow = spec.sizeBytes !== undefined && spec.sizeBytes > base.virtualSizeBytes ? spec.sizeBytes : undefined;
  await mkdir(dirname(spec.overlayPath), { recursive: true });
  await run('qemu-img', qemuImgOverlayArgs({ basePath, baseFormat: spec.baseFormat, overlayPath: spec.overlayPath, sizeBytes: grow }), {
    timeoutMs: 60_000,
    ...(spec.signal === undefined ? {} : { signal: spec.signal }),
  });
  return { path: spec.overlayPath, format: 'qcow2', virtualSizeBytes: grow ?? base.virtualSizeBytes };
}

/** `qemu-img info` as data. Shares the image lock, so it also works on a disk a running VM holds. */
export async function qemuImgInfo(path: string, signal?: AbortSignal): Promise<QemuImgInfo> {
  const result = await run('qemu-img', ['info', '--output=json', '--force-share', path], {
    timeoutMs: 60_000,
    ...(signal === undefined ? {} : { signal }),
  });
  return parseQemuImgInfo(result.stdout, path);
}

export function parseQemuImgInfo(json: string, path: string): QemuImgInfo {
  let data: Record<string, unknown>;
  try {
    data = JSON.parse(json) as Record<string, unknown>;
  } catch (error) {
    throw new KibError('QEMU_IMG_OUTPUT', `qemu-img info for ${path} did not print JSON`, { cause: error });
  }
  const format = data.format;
  const virtualSize = data['virtual-size'];
  const actualSize = data['actual-size'];
  if (typeof format !== 'string' || typeof virtualSize !== 'number') {
    throw new KibError('QEMU_IMG_OUTPUT', `qemu-img info for ${path} lacks format or virtual-size`);
  }
  const backing = data['full-backing-filename'] ?? data['backing-filename'];
  return {
    format,
    virtualSizeBytes: virtualSize,
    actualSizeBytes: typeof actualSize === 'number' ? actualSize : 0,
    backingFile: typeof backing === 'string' ? backing : undefined,
  };
}
