import { open, type FileHandle } from 'node:fs/promises';

/** Where one member of a tar file lives, so it can be streamed later without extracting. */
export interface TarEntry {
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'hardlink' | 'other';
  /** Byte offset of the member's data in the tar file. */
  offset: number;
  sizeBytes: number;
  /** Target of a symlink or hard link. */
  linkName: string | undefined;
}

export class TarFormatError extends Error {}

const BLOCK = 512;

/**
 * Reads only the headers of an uncompressed tar file (ustar, GNU long names, PAX extended headers)
 * and records where each member's data starts. The data itself is never read here: callers stream
 * ranges of the file, so a 10 GiB layer costs no memory and no temporary copy.
 */
export async function indexTar(path: string): Promise<Map<string, TarEntry>> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    const entries = new Map<string, TarEntry>();
    const header = Buffer.alloc(BLOCK);
    let position = 0;
    let longName: string | undefined;
    let longLink: string | undefined;
    let pax: Record<string, string> = {};
    let globalPax: Record<string, string> = {};
    for (;;) {
      if (position + BLOCK > size) throw new TarFormatError(`truncated tar: header at byte ${position} runs past the end (${size} bytes)`);
      await readFully(handle, header, position);
      if (header.every((byte) => byte === 0)) break;
      verifyChecksum(header, position);
      const typeflag = String.fromCharCode(header[156] ?? 0);
      const headerSize = parseNumber(header.subarray(124, 136), position);
      const ustar = header.subarray(257, 262).toString('latin1') === 'ustar';
      const prefix = ustar ? cString(header.subarray(345, 500)) : '';
      const rawName = cString(header.subarray(0, 100));
      const dataOffset = position + BLOCK;
      const isMeta = typeflag === 'L' || typeflag === 'K' || typeflag === 'x' || typeflag === 'g';
      const attributes = isMeta ? {} : { ...globalPax, ...pax };
      const sizeBytes = attributes.size !== undefined ? Number(attributes.size) : headerSize;
      if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) throw new TarFormatError(`bad size for tar member at byte ${position}`);
      if (dataOffset + sizeBytes > size) throw new TarFormatError(`truncated tar: member at byte ${position} needs ${sizeBytes} bytes`);

      if (typeflag === 'L' || typeflag === 'K') {
        const text = cString(await readRange(handle, dataOffset, sizeBytes));
        if (typeflag === 'L') longName = text;
        else longLink = text;
      } else if (typeflag === 'x' || typeflag === 'g') {
        const records = parsePax(await readRange(handle, dataOffset, sizeBytes), position);
        if (typeflag === 'x') pax = records;
        else globalPax = { ...globalPax, ...records };
      } else {
        const name = normalizeName(attributes.path ?? longName ?? (prefix === '' ? rawName : `${prefix}/${rawName}`));
        const linkName = attributes.linkpath ?? longLink ?? cString(header.subarray(157, 257));
        const type = typeOf(typeflag);
        entries.set(name, { name, type, offset: dataOffset, sizeBytes: type === 'file' ? sizeBytes : 0, linkName: linkName === '' ? undefined : linkName });
        longName = undefined;
        longLink = undefined;
        pax = {};
      }
      // Hard links and directories carry no data even when a size is recorded in old archives.
      const dataBytes = typeflag === '1' || typeflag === '2' || typeflag === '5' ? 0 : sizeBytes;
      position = dataOffset + Math.ceil(dataBytes / BLOCK) * BLOCK;
    }
    return entries;
  } finally {
    await handle.close();
  }
}

function typeOf(flag: string): TarEntry['type'] {
  switch (flag) {
    case '0':
    case '\0':
    case '7':
      return 'file';
    case '5':
      return 'directory';
    case '2':
      return 'symlink';
    case '1':
      return 'hardlink';
    default:
      return 'other';
  }
}

function normalizeName(name: string): string {
  let result = name;
  while (result.startsWith('./')) result = result.slice(2);
  while (result.endsWith('/')) result = result.slice(0, -1);
  return result;
}

function cString(bytes: Buffer): string {
  const end = bytes.indexOf(0);
  return bytes.subarray(0, end < 0 ? bytes.length : end).toString('utf8');
}

/** Octal ASCII, or GNU base-256 (high bit set) for sizes of 8 GiB and more. */
function parseNumber(field: Buffer, position: number): number {
  const first = field[0] ?? 0;
  if ((first & 0x80) !== 0) {
    let value = BigInt(first & 0x7f);
    for (const byte of field.subarray(1)) value = (value << 8n) | BigInt(byte);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new TarFormatError(`tar member at byte ${position} is too large`);
    return Number(value);
  }
  const text = field.toString('latin1').replace(/[\0 ]+$/, '').trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarFormatError(`bad numeric field "${text}" in tar header at byte ${position}`);
  return parseInt(text, 8);
}

function verifyChecksum(header: Buffer, position: number): void {
  const recorded = parseNumber(header.subarray(148, 156), position);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (header[i] ?? 0);
  if (sum !== recorded) throw new TarFormatError(`not a tar file, or corrupt: header checksum mismatch at byte ${position}`);
}

/** PAX records: "<length> <key>=<value>\n", length counting the whole record. */
function parsePax(data: Buffer, position: number): Record<string, string> {
  const records: Record<string, string> = {};
  let offset = 0;
  while (offset < data.length) {
    const space = data.indexOf(0x20, offset);
    if (space < 0) break;
    const length = Number(data.subarray(offset, space).toString('latin1'));
    if (!Number.isSafeInteger(length) || length <= 0 || offset + length > data.length) {
      throw new TarFormatError(`bad PAX header at byte ${position}`);
    }
    const record = data.subarray(space + 1, offset + length - 1).toString('utf8');
    const equals = record.indexOf('=');
    if (equals > 0) records[record.slice(0, equals)] = record.slice(equals + 1);
    offset += length;
  }
  return records;
}

async function readFully(handle: FileHandle, buffer: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buffer.length) {
    const { bytesRead } = await handle.read(buffer, done, buffer.length - done, position + done);
    if (bytesRead === 0) throw new TarFormatError(`unexpected end of tar file at byte ${position + done}`);
    done += bytesRead;
  }
}

async function readRange(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  await readFully(handle, buffer, position);
  return buffer;
}
