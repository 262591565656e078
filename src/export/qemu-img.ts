import { KibError } from '../core/errors.js';
import type { DiskImage } from '../core/types.js';
import { run } from '../process/index.js';
import type { Reporter } from '../report/events.js';

export type DiskFormat = 'qcow2' | 'raw';

export interface QemuImgConvertSpec {
  source: string;
  sourceFormat: DiskFormat;
  target: string;
  targetFormat: DiskFormat;
  /** qcow2 only: compress every cluster (zlib). Raw output is never compressed. */
  compress: boolean;
  /** Ask qemu-img to print `(NN.NN/100%)` progress lines. */
  progress?: boolean;
}

/**
 * argv for `qemu-img convert`. Source and target formats are always explicit, so nothing is probed
 * from file contents. The target never has a backing file: convert reads through the whole chain.
 * No `-W`: out-of-order writes would make the qcow2's cluster layout, and so its sha256, vary
 * run to run. `compat=1.1` is pinned rather than left to the qemu-img version's default.
 */
export function qemuImgConvertArgs(spec: QemuImgConvertSpec): string[] {
  const args = ['convert'];
  if (spec.progress === true) args.push('-p');
  args.push('-f', spec.sourceFormat, '-O', spec.targetFormat);
  if (spec.targetFormat === 'qcow2') {
    if (spec.compress) args.push('-c');
    args.push('-o', 'compat=1.1');
  }
  args.push(plainFileName(spec.source), plainFileName(spec.target));
  return args;
}

/** argv for `qemu-img info` as JSON; with a format, the file is not probed. */
export function qemuImgInfoArgs(path: string, format?: DiskFormat): string[] {
  return ['info', '--output', 'json', ...(format === undefined ? [] : ['-f', format]), plainFileName(path)];
}

export interface QemuImgInfo {
  format: string;
  virtualSizeBytes: number;
  actualSizeBytes: number | undefined;
  backingFile: string | undefined;
}

export function parseQemuImgInfo(json: string): QemuImgInfo {
  let data: unknown;
  try {
    data = JSON.parse(json);
  } catch (error) {
    throw new KibError('QEMU_IMG_OUTPUT', `qemu-img info printed something that is not JSON: ${json.slice(0, 200)}`, { cause: error });
  }
  if (typeof data !== 'object' || data === null) throw new KibError('QEMU_IMG_OUTPUT', 'qemu-img info printed JSON that is not an object');
  const record = data as Record<string, unknown>;
  const format = record['format'];
  const virtualSize = record['virtual-size'];
  if (typeof format !== 'string' || typeof virtualSize !== 'number') {
    throw new KibError('QEMU_IMG_OUTPUT', `qemu-img info JSON lacks "format" or "virtual-size": ${json.slice(0, 200)}`);
  }
  const actual = record['actual-size'];
  const backing = record['backing-filename'] ?? record['full-backing-filename'];
  return {
    format,
    virtualSizeBytes: virtualSize,
    actualSizeBytes: typeof actual === 'number' ? actual : undefined,
    backingFile: typeof backing === 'string' ? backing : undefined,
  };
}

/**
 * The last percentage in a chunk of `qemu-img convert -p` output. qemu-img redraws one line with
 * carriage returns, so a single "line" may carry many updates, or only the final newline.
 */
export function parseQemuImgProgress(text: string): number | undefined {
  let last: number | undefined;
  for (const match of text.matchAll(/\((\d{1,3}(?:\.\d+)?)\/100%\)/g)) {
    const value = Number(match[1]);
    if (Number.isFinite(value) && value >= 0 && value <= 100) last = value;
  }
  return last;
}

export interface ConvertDiskOptions {
  signal?: AbortSignal;
  reporter?: Reporter;
  /** Label of the progress events (defaults to the target format). */
  label?: string;
  /** Lets progress be reported in bytes; otherwise in percent as items of 100. */
  sourceVirtualSizeBytes?: number;
}

/**
 * Converts a disk (following its backing chain) into a standalone image and checks the result:
 * the format asked for and no backing file, which KubeVirt rejects in a containerDisk.
 */
export async function convertDisk(spec: QemuImgConvertSpec, options: ConvertDiskOptions = {}): Promise<DiskImage> {
  const label = options.label ?? spec.targetFormat;
  const total = options.sourceVirtualSizeBytes;
  let lastWhole = -1;
  const onProgress = (percent: number): void => {
    const whole = Math.floor(percent);
    if (whole === lastWhole) return;
    lastWhole = whole;
    options.reporter?.emit(
      total === undefined
        ? { type: 'progress', phase: 'export', label, done: whole, total: 100, unit: 'items' }
        : { type: 'progress', phase: 'export', label, done: Math.round((total * percent) / 100), total, unit: 'bytes' },
    );
  };
  await run('qemu-img', qemuImgConvertArgs({ ...spec, progress: true }), {
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    onLine: (stream, line) => {
      const percent = stream === 'stdout' ? parseQemuImgProgress(line) : undefined;
      if (percent !== undefined) onProgress(percent);
      else if (line.trim() !== '') options.reporter?.emit({ type: 'log', source: 'qemu-img', line });
    },
  });
  const info = await inspectDisk(spec.target, spec.targetFormat, options.signal);
  if (info.backingFile !== undefined) {
    throw new KibError('EXPORT_INVALID', `${spec.target} still has a backing file (${info.backingFile}); expected a standalone image`);
  }
  return { path: spec.target, format: spec.targetFormat, virtualSizeBytes: info.virtualSizeBytes };
}

/** `qemu-img info` on one file, checked against the format we expect. */
export async function inspectDisk(path: string, format: DiskFormat, signal?: AbortSignal): Promise<QemuImgInfo> {
  const result = await run('qemu-img', qemuImgInfoArgs(path), signal === undefined ? {} : { signal });
  const info = parseQemuImgInfo(result.stdout);
  if (info.format !== format) {
    throw new KibError('EXPORT_INVALID', `${path} is ${info.format}, expected ${format}`);
  }
  return info;
}

// qemu-img treats `name:rest` as a protocol (nbd:, json:, …); a leading ./ keeps a relative
// file name a file name.
function plainFileName(path: string): string {
  return path.startsWith('/') || path.startsWith('./') || path.startsWith('../') ? path : `./${path}`;
}
