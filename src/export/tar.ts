/**
 * A small tar header writer: POSIX ustar headers, plus a PAX extended header when a field does not
 * fit (names longer than ustar allows, sizes of 8 GiB and more). Every byte is a function of the
 * entry alone — no wall clock, no process id, no host user names — so archives built from the same
 * inputs are identical.
 */

export const TAR_BLOCK_BYTES = 512;

/** Two zero blocks end an archive. Readers stop there; no padding to a record size is needed. */
export const TAR_END = Buffer.alloc(TAR_BLOCK_BYTES * 2);

export interface TarEntry {
  /** Relative path with `/` separators; directories end in `/` (added when missing). */
  name: string;
  type: 'file' | 'directory';
  mode: number;
  uid: number;
  gid: number;
  /** Left empty by default: runtimes use the numeric ids, and tar maps names on the extracting host. */
  uname?: string;
  gname?: string;
  /** Seconds since the epoch. */
  mtimeSec: number;
  /** Content length of a file; ignored for directories. */
  sizeBytes: number;
}

// Largest value an ustar numeric field of `width` bytes can hold: width-1 octal digits plus NUL.
const maxOctal = (width: number): number => 8 ** (width - 1) - 1;
const SIZE_FIELD_MAX = maxOctal(12);

/** The header block(s) that precede an entry's content: a PAX header when needed, then ustar. */
export function renderTarHeader(entry: TarEntry): Buffer {
  const name = entry.type === 'directory' && !entry.name.endsWith('/') ? `${entry.name}/` : entry.name;
  validateName(name);
  const sizeBytes = entry.type === 'directory' ? 0 : entry.sizeBytes;
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) throw new RangeError(`tar entry ${name}: invalid size ${sizeBytes}`);
  for (const [field, value, width] of [
    ['mode', entry.mode, 8],
    ['uid', entry.uid, 8],
    ['gid', entry.gid, 8],
    ['mtime', entry.mtimeSec, 12],
  ] as const) {
    if (!Number.isSafeInteger(value) || value < 0 || value > maxOctal(width)) {
      throw new RangeError(`tar entry ${name}: ${field} ${value} does not fit a ustar header`);
    }
  }

  const pax: [string, string][] = [];
  const split = splitUstarName(name);
  if (split === undefined) pax.push(['path', name]);
  if (sizeBytes > SIZE_FIELD_MAX) pax.push(['size', String(sizeBytes)]);

  const ustar = ustarBlock({
    name: split?.name ?? truncateBytes(name, 100),
    prefix: split?.prefix ?? '',
    mode: entry.mode,
    uid: entry.uid,
    gid: entry.gid,
    // With a PAX size record, readers take the size from there; the ustar field must still parse.
    sizeBytes: sizeBytes > SIZE_FIELD_MAX ? 0 : sizeBytes,
    mtimeSec: entry.mtimeSec,
    typeflag: entry.type === 'directory' ? '5' : '0',
    uname: entry.uname ?? '',
    gname: entry.gname ?? '',
  });
  if (pax.length === 0) return ustar;

  const records = Buffer.from(pax.map(([key, value]) => paxRecord(key, value)).join(''), 'utf8');
  const paxHeader = ustarBlock({
    // A fixed name: GNU tar puts its process id here, which would make archives differ run to run.
    name: truncateBytes(`PaxHeaders/${baseName(name)}`, 100),
    prefix: '',
    mode: 0o644,
    uid: 0,
    gid: 0,
    sizeBytes: records.length,
    mtimeSec: entry.mtimeSec,
    typeflag: 'x',
    uname: '',
    gname: '',
  });
  return Buffer.concat([paxHeader, records, tarPadding(records.length), ustar]);
}

/** Zero bytes that fill an entry's content up to the next block boundary. */
export function tarPadding(sizeBytes: number): Buffer {
  const rest = sizeBytes % TAR_BLOCK_BYTES;
  return Buffer.alloc(rest === 0 ? 0 : TAR_BLOCK_BYTES - rest);
}

/** One PAX record, `"<len> <key>=<value>\n"`, where `<len>` counts the whole record including itself. */
export function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bodyBytes = Buffer.byteLength(body, 'utf8');
  let length = bodyBytes + String(bodyBytes).length;
  if (String(length).length !== String(bodyBytes).length) length = bodyBytes + String(length).length;
  return `${length}${body}`;
}

interface UstarFields {
  name: string;
  prefix: string;
  mode: number;
  uid: number;
  gid: number;
  sizeBytes: number;
  mtimeSec: number;
  typeflag: string;
  uname: string;
  gname: string;
}

function ustarBlock(fields: UstarFields): Buffer {
  const block = Buffer.alloc(TAR_BLOCK_BYTES);
  writeString(block, 0, 100, fields.name);
  writeOctal(block, 100, 8, fields.mode);
  writeOctal(block, 108, 8, fields.uid);
  writeOctal(block, 116, 8, fields.gid);
  writeOctal(block, 124, 12, fields.sizeBytes);
  writeOctal(block, 136, 12, fields.mtimeSec);
  block.fill(0x20, 148, 156); // the checksum is computed with its own field as spaces
  writeString(block, 156, 1, fields.typeflag);
  writeString(block, 257, 6, 'ustar\0');
  writeString(block, 263, 2, '00');
  writeString(block, 265, 32, fields.uname);
  writeString(block, 297, 32, fields.gname);
  writeOctal(block, 329, 8, 0);
  writeOctal(block, 337, 8, 0);
  writeString(block, 345, 155, fields.prefix);
  let sum = 0;
  for (const byte of block) sum += byte;
  // Six octal digits, NUL, space: the layout GNU tar and Go's archive/tar write.
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return block;
}

function writeString(block: Buffer, offset: number, width: number, value: string): void {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length > width) throw new RangeError(`tar header field at ${offset} is ${bytes.length} bytes, at most ${width} fit`);
  bytes.copy(block, offset);
}

function writeOctal(block: Buffer, offset: number, width: number, value: number): void {
  block.write(`${value.toString(8).padStart(width - 1, '0')}\0`, offset, width, 'ascii');
}

/** Splits a name into ustar's prefix (≤155 bytes) and name (≤100 bytes) fields, or undefined. */
function splitUstarName(name: string): { prefix: string; name: string } | undefined {
  if (Buffer.byteLength(name, 'utf8') <= 100 && isAscii(name)) return { prefix: '', name };
  if (!isAscii(name)) return undefined;
  // The split must fall on a `/`; a directory's trailing slash stays with the name part.
  const body = name.endsWith('/') ? name.slice(0, -1) : name;
  for (let i = body.lastIndexOf('/'); i > 0; i = body.lastIndexOf('/', i - 1)) {
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (prefix.length <= 155 && rest.length <= 100 && rest.length > 0) return { prefix, name: rest };
    if (prefix.length <= 155) break;
  }
  return undefined;
}

function validateName(name: string): void {
  if (name === '' || name.startsWith('/') || name.split('/').some((part) => part === '..')) {
    throw new RangeError(`tar entry name must be relative and stay inside the archive, got '${name}'`);
  }
  if (name.includes('\0')) throw new RangeError('tar entry name contains NUL');
}

function isAscii(text: string): boolean {
  return /^[\x20-\x7e]*$/.test(text);
}

function baseName(name: string): string {
  const trimmed = name.endsWith('/') ? name.slice(0, -1) : name;
  return trimmed.slice(trimmed.lastIndexOf('/') + 1);
}

function truncateBytes(text: string, maxBytes: number): string {
  // Only ever called on ASCII-safe fallbacks or names already covered by a PAX path record.
  let out = text;
  while (Buffer.byteLength(out, 'utf8') > maxBytes) out = out.slice(0, -1);
  return out;
}
