/**
 * The parts of HTTP semantics (RFC 9110) that a read-only file server needs: byte ranges and
 * validators. Pure functions, so every corner case is a one-line unit test.
 */

/** What a `Range` header asks of a representation of `sizeBytes` bytes. */
export type RangeRequest =
  /** No usable Range header: send the whole representation with 200. */
  | { kind: 'none' }
  /** One satisfiable range; `end` is inclusive, as in Content-Range. */
  | { kind: 'single'; start: number; end: number }
  /** Several ranges: we answer with the whole representation (200) rather than multipart/byteranges. */
  | { kind: 'multiple' }
  /** Well-formed but no byte of it lies inside the representation: 416. */
  | { kind: 'unsatisfiable' };

const RANGE_SPEC = /^(\d*)-(\d*)$/;

/**
 * Parses a `Range` header for a representation of `sizeBytes` bytes.
 *
 * A header that is not well-formed, or uses a unit other than `bytes`, is ignored (RFC 9110 §14.2:
 * a server may ignore Range), so the client gets the full 200 instead of an error. Multi-range
 * requests are also answered with the full representation: CDI, qemu-img/nbdkit-curl and curl
 * only ever ask for one range, and a 200 is always a valid answer to a Range request.
 */
export function parseRangeHeader(header: string | undefined, sizeBytes: number): RangeRequest {
  if (header === undefined) return { kind: 'none' };
  const equals = header.indexOf('=');
  if (equals < 0 || header.slice(0, equals).trim().toLowerCase() !== 'bytes') return { kind: 'none' };
  const specs = header
    .slice(equals + 1)
    .split(',')
    .map((part) => part.trim())
    // RFC 9110 list syntax allows empty elements ("bytes=0-1,,2-3").
    .filter((part) => part !== '');
  if (specs.length === 0) return { kind: 'none' };

  const parsed: { start: number; end: number }[] = [];
  for (const spec of specs) {
    const match = RANGE_SPEC.exec(spec);
    if (match === null) return { kind: 'none' };
    const [, first = '', last = ''] = match;
    if (first === '' && last === '') return { kind: 'none' };
    if (first === '') {
      // Suffix range: the last N bytes.
      const suffix = toNumber(last);
      if (suffix === 0) continue;
      parsed.push({ start: Math.max(0, sizeBytes - suffix), end: sizeBytes - 1 });
      continue;
    }
    const start = toNumber(first);
    const end = last === '' ? Number.POSITIVE_INFINITY : toNumber(last);
    if (end < start) return { kind: 'none' };
    if (start >= sizeBytes) continue;
    parsed.push({ start, end: Math.min(end, sizeBytes - 1) });
  }
  if (specs.length > 1) return parsed.length === 0 ? { kind: 'unsatisfiable' } : { kind: 'multiple' };
  const only = parsed[0];
  if (only === undefined || sizeBytes === 0) return { kind: 'unsatisfiable' };
  return { kind: 'single', start: only.start, end: only.end };
}

/** Digits to a number; values beyond 2^53 are "larger than any file" and saturate to Infinity. */
function toNumber(digits: string): number {
  const value = Number(digits);
  return Number.isSafeInteger(value) ? value : Number.POSITIVE_INFINITY;
}

/**
 * Splits an `If-None-Match` / `If-Match` list into entity tags. Commas inside quoted tags are kept
 * (an entity tag may contain any character except a double quote).
 */
export function parseEntityTagList(header: string): string[] {
  const tags: string[] = [];
  const pattern = /\s*(\*|(?:W\/)?"[^"]*")\s*(?:,|$)/gy;
  let match: RegExpExecArray | null;
  while ((match = pattern.exec(header)) !== null) {
    if (match[1] !== undefined) tags.push(match[1]);
    if (pattern.lastIndex >= header.length) break;
  }
  return tags;
}

/** Weak comparison (RFC 9110 §8.8.3.2), used by If-None-Match. */
export function weakEntityTagMatch(list: string, etag: string): boolean {
  const opaque = stripWeak(etag);
  return parseEntityTagList(list).some((tag) => tag === '*' || stripWeak(tag) === opaque);
}

/** Strong comparison, used by If-Match and If-Range: weak tags never match. */
export function strongEntityTagMatch(list: string, etag: string): boolean {
  if (etag.startsWith('W/')) return false;
  return parseEntityTagList(list).some((tag) => tag === '*' || tag === etag);
}

function stripWeak(tag: string): string {
  return tag.startsWith('W/') ? tag.slice(2) : tag;
}

/**
 * Whether an `If-Range` precondition holds, i.e. whether the Range header may be honoured.
 * An entity tag must match strongly; a date must equal Last-Modified exactly, since a date is only
 * a strong validator when it is the stored modification time itself.
 */
export function ifRangeHolds(ifRange: string, etag: string, lastModified: string): boolean {
  const value = ifRange.trim();
  if (value.startsWith('"') || value.startsWith('W/')) {
    return !value.startsWith('W/') && value === etag;
  }
  const date = Date.parse(value);
  return !Number.isNaN(date) && date === Date.parse(lastModified);
}

/** `If-Modified-Since`: true when the resource has not changed since the given date. */
export function notModifiedSince(ifModifiedSince: string, lastModifiedMs: number): boolean {
  const since = Date.parse(ifModifiedSince);
  if (Number.isNaN(since)) return false;
  // HTTP dates have one-second resolution.
  return Math.floor(lastModifiedMs / 1000) * 1000 <= since;
}
