import { createHash } from 'node:crypto';

/**
 * JSON with object keys sorted at every level and no whitespace, so equal data always gives equal
 * text (and equal hashes). Follows JSON.stringify otherwise: undefined properties are dropped,
 * undefined array entries become null. Cache keys and configSha256 are hashes of this text.
 */
export function canonicalJson(value: unknown): string {
  const text = JSON.stringify(sortKeys(value));
  if (text === undefined) throw new TypeError(`cannot encode ${typeof value} as canonical JSON`);
  return text;
}

/** Lowercase hex sha256 of a string (as UTF-8) or bytes. */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map((item) => (item === undefined ? null : sortKeys(item)));
  if (value !== null && typeof value === 'object') {
    const json = (value as { toJSON?: () => unknown }).toJSON;
    if (typeof json === 'function') return sortKeys(json.call(value));
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const entry = (value as Record<string, unknown>)[key];
      if (entry !== undefined) sorted[key] = sortKeys(entry);
    }
    return sorted;
  }
  if (typeof value === 'bigint') throw new TypeError('cannot encode a bigint as canonical JSON');
  return value;
}
