/**
 * Sizes and durations as people write them in image.yaml ("20G", "10m"), parsed once into the
 * units the rest of the tool uses (bytes, milliseconds), and formatted back for `kib plan`.
 */

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  K: 1024,
  M: 1024 ** 2,
  G: 1024 ** 3,
  T: 1024 ** 4,
};

const SIZE_PATTERN = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i;

/**
 * Parses "20G", "512M", "1.5G", "20GiB" or a plain byte count. K/M/G/T are powers of 1024, as in
 * qemu-img. Throws a TypeError whose message can be shown to the user as is.
 */
export function parseSize(value: string | number): number {
  const shown = typeof value === 'string' ? JSON.stringify(value) : String(value);
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value) && value >= 0) return value;
    throw new TypeError(`expected a size like "20G" or a whole number of bytes, got ${shown}`);
  }
  const match = SIZE_PATTERN.exec(value.trim());
  if (match === null) throw new TypeError(`expected a size like "20G", got ${shown}`);
  const amount = Number(match[1]);
  const unit = SIZE_UNITS[(match[2] ?? '').toUpperCase()] ?? 1;
  const bytes = amount * unit;
  if (!Number.isInteger(bytes)) throw new TypeError(`${shown} is not a whole number of bytes`);
  if (!Number.isSafeInteger(bytes)) throw new TypeError(`${shown} is too large`);
  return bytes;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION_TOKEN = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;

/**
 * Parses "30s", "10m", "1h", "1h30m" or "500ms" into milliseconds. A bare number is rejected:
 * without a unit, "600" could mean seconds or milliseconds.
 */
export function parseDuration(value: string | number): number {
  const shown = typeof value === 'string' ? JSON.stringify(value) : String(value);
  if (typeof value === 'number') {
    throw new TypeError(`expected a duration like "10m", got ${shown} (add a unit: s, m or h)`);
  }
  const text = value.trim();
  if (text === '') throw new TypeError(`expected a duration like "10m", got ${shown}`);
  let total = 0;
  let consumed = 0;
  DURATION_TOKEN.lastIndex = 0;
  for (let match = DURATION_TOKEN.exec(text); match !== null; match = DURATION_TOKEN.exec(text)) {
    total += Number(match[1]) * (DURATION_UNITS[match[2] ?? ''] ?? Number.NaN);
    consumed = DURATION_TOKEN.lastIndex;
  }
  if (consumed !== text.length || !Number.isFinite(total)) {
    throw new TypeError(`expected a duration like "30s", "10m" or "1h", got ${shown}`);
  }
  return Math.round(total);
}

/** "20 GiB", "1.5 GiB", "512 B": exact where possible, two decimals at most otherwise. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'] as const;
  let value = bytes;
  let index = 0;
  while (index < units.length - 1 && Math.abs(value) >= 1024) {
    value /= 1024;
    index += 1;
  }
  const rounded = Math.round(value * 100) / 100;
  return `${String(rounded)} ${units[index] ?? 'B'}`;
}

/** "10m", "1h30m", "45s", "1.5s" — the shortest form parseDuration reads back to the same value. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms % 1000 !== 0) return ms < 1000 ? `${String(ms)}ms` : `${String(ms / 1000)}s`;
  let seconds = ms / 1000;
  const hours = Math.floor(seconds / 3600);
  seconds -= hours * 3600;
  const minutes = Math.floor(seconds / 60);
  seconds -= minutes * 60;
  return `${hours > 0 ? `${String(hours)}h` : ''}${minutes > 0 ? `${String(minutes)}m` : ''}${seconds > 0 ? `${String(seconds)}s` : ''}`;
}
