import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { KibError } from '../core/errors.js';

/**
 * The GPT edit that gives a written disk its per-Machine CIDATA partition (docs/netboot.md, "First
 * boot"). The image's own GPT describes a disk as large as the image; the target disk is larger.
 * From the image's primary GPT and the target disk's size this computes a new primary GPT (LBA 1…)
 * with one more partition — the NoCloud seed, near the end of the disk — and the matching backup
 * GPT at the disk's last LBAs. LBA 0 keeps the image's BIOS boot code; only its protective
 * partition is resized to the disk (else tools warn of a size mismatch).
 * Placing the seed at the end leaves the space after the root partition free, so cloud-init's
 * growpart still grows the root up to the seed.
 *
 * GPT layout: UEFI Specification 2.10, section 5.3 (header fields, CRC32 over the header with its
 * CRC field zeroed and over the entry array).
 */

export const SECTOR_BYTES = 512;
const SIGNATURE = 'EFI PART';
const ALIGN_SECTORS = 2048;
/** "Microsoft basic data": what blkid and cloud-init expect on a removable seed; any type works. */
const BASIC_DATA_TYPE = 'EBD0A0A2-B9E5-4433-87C0-68B6B72699C7';

export interface GptHeader {
  headerSize: number;
  firstUsableLba: bigint;
  lastUsableLba: bigint;
  diskGuid: Buffer;
  entriesLba: bigint;
  entryCount: number;
  entrySize: number;
}

export interface GptEntry {
  index: number;
  typeGuid: Buffer;
  firstLba: bigint;
  lastLba: bigint;
}

export interface ParsedGpt {
  /** LBA 0: the protective MBR (with the image's BIOS boot code). */
  mbr: Buffer;
  header: GptHeader;
  /** The raw entry array. */
  entries: Buffer;
  used: GptEntry[];
}

export class GptError extends KibError {
  constructor(message: string) {
    super('GPT_INVALID', message);
  }
}

/** Reads the primary GPT from the first sectors of an image (LBA 0 onwards; 34 sectors are enough for 128 entries). */
export function parseGpt(head: Buffer): ParsedGpt {
  const header = head.subarray(SECTOR_BYTES, 2 * SECTOR_BYTES);
  if (header.length < 92 || header.toString('latin1', 0, 8) !== SIGNATURE) throw new GptError('the image has no GPT at LBA 1');
  const headerSize = header.readUInt32LE(12);
  const copy = Buffer.from(header.subarray(0, headerSize));
  copy.writeUInt32LE(0, 16);
  if (crc32(copy) !== header.readUInt32LE(16)) throw new GptError('the image GPT header CRC does not match');
  const parsed: GptHeader = {
    headerSize,
    firstUsableLba: header.readBigUInt64LE(40),
    lastUsableLba: header.readBigUInt64LE(48),
    diskGuid: Buffer.from(header.subarray(56, 72)),
    entriesLba: header.readBigUInt64LE(72),
    entryCount: header.readUInt32LE(80),
    entrySize: header.readUInt32LE(84),
  };
  const start = Number(parsed.entriesLba) * SECTOR_BYTES;
  const entries = Buffer.from(head.subarray(start, start + parsed.entryCount * parsed.entrySize));
  if (entries.length !== parsed.entryCount * parsed.entrySize) throw new GptError('the image GPT entry array is cut short');
  if (crc32(entries) !== header.readUInt32LE(88)) throw new GptError('the image GPT entry array CRC does not match');
  const used: GptEntry[] = [];
  for (let index = 0; index < parsed.entryCount; index += 1) {
    const entry = entries.subarray(index * parsed.entrySize, (index + 1) * parsed.entrySize);
    const typeGuid = Buffer.from(entry.subarray(0, 16));
    if (typeGuid.every((byte) => byte === 0)) continue;
    used.push({ index, typeGuid, firstLba: entry.readBigUInt64LE(32), lastLba: entry.readBigUInt64LE(40) });
  }
  return { mbr: Buffer.from(head.subarray(0, SECTOR_BYTES)), header: parsed, entries, used };
}

/** A GUID in text form → its on-disk mixed-endian bytes. */
export function guidBytes(text: string): Buffer {
  const hex = text.replaceAll('-', '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new GptError(`not a GUID: ${text}`);
  const raw = Buffer.from(hex, 'hex');
  return Buffer.concat([Buffer.from(raw.subarray(0, 4)).reverse(), Buffer.from(raw.subarray(4, 6)).reverse(), Buffer.from(raw.subarray(6, 8)).reverse(), raw.subarray(8)]);
}

export interface SeedPartitionPlan {
  /**
   * LBA 0 up to the end of the primary entry array: write at sector 0. LBA 0 is the image's, with
   * the protective partition resized to the disk.
   */
  primary: Buffer;
  /** The backup entry array and header: write at `backupLba`. */
  backup: Buffer;
  backupLba: bigint;
  /** Where the seed's bytes go, and how many sectors the partition has. */
  seedLba: bigint;
  seedSectors: bigint;
  /** 1-based partition number of the seed. */
  partitionNumber: number;
}

/**
 * Adds the seed partition for a disk of `diskBytes`. `seedBytes` is the seed's size; `uniqueSeed`
 * makes the partition GUID (stable for one Machine). Refuses when the disk cannot hold the image
 * and the seed.
 */
export function planSeedPartition(gpt: ParsedGpt, options: { diskBytes: bigint; imageBytes: bigint; seedBytes: number; uniqueSeed: string; name?: string }): SeedPartitionPlan {
  const { header } = gpt;
  const diskSectors = options.diskBytes / BigInt(SECTOR_BYTES);
  const entrySectors = BigInt(Math.ceil((header.entryCount * header.entrySize) / SECTOR_BYTES));
  const lastLba = diskSectors - 1n;
  const backupEntriesLba = lastLba - entrySectors;
  const lastUsable = backupEntriesLba - 1n;
  const seedSectors = BigInt(Math.ceil(options.seedBytes / (ALIGN_SECTORS * SECTOR_BYTES)) * ALIGN_SECTORS);
  const seedEnd = ((lastUsable + 1n) / BigInt(ALIGN_SECTORS)) * BigInt(ALIGN_SECTORS) - 1n;
  const seedLba = seedEnd + 1n - seedSectors;
  const imageSectors = (options.imageBytes + BigInt(SECTOR_BYTES) - 1n) / BigInt(SECTOR_BYTES);
  const highestUsed = gpt.used.reduce((max, entry) => (entry.lastLba > max ? entry.lastLba : max), 0n);
  if (seedLba < imageSectors || seedLba <= highestUsed) {
    throw new GptError(`a disk of ${options.diskBytes} bytes is too small for the image (${options.imageBytes} bytes) and its seed partition`);
  }
  const free = [...Array(header.entryCount).keys()].find((index) => !gpt.used.some((entry) => entry.index === index));
  if (free === undefined) throw new GptError('the image GPT has no free partition entry');

  const entries = Buffer.from(gpt.entries);
  const entry = entries.subarray(free * header.entrySize, (free + 1) * header.entrySize);
  entry.fill(0);
  guidBytes(BASIC_DATA_TYPE).copy(entry, 0);
  const unique = createHash('sha256').update(options.uniqueSeed).digest().subarray(0, 16);
  unique[7] = (unique[7]! & 0x0f) | 0x40; // version 4 layout (byte 7 holds the high byte of field 3)
  unique[8] = (unique[8]! & 0x3f) | 0x80;
  unique.copy(entry, 16);
  entry.writeBigUInt64LE(seedLba, 32);
  entry.writeBigUInt64LE(seedEnd, 40);
  Buffer.from((options.name ?? 'CIDATA').slice(0, 36), 'utf16le').copy(entry, 56);
  const entriesCrc = crc32(entries);

  const makeHeader = (myLba: bigint, alternateLba: bigint, entriesLba: bigint): Buffer => {
    const sector = Buffer.alloc(SECTOR_BYTES);
    sector.write(SIGNATURE, 0, 'latin1');
    sector.writeUInt32LE(0x0001_0000, 8);
    sector.writeUInt32LE(92, 12);
    sector.writeBigUInt64LE(myLba, 24);
    sector.writeBigUInt64LE(alternateLba, 32);
    sector.writeBigUInt64LE(header.firstUsableLba, 40);
    sector.writeBigUInt64LE(lastUsable, 48);
    header.diskGuid.copy(sector, 56);
    sector.writeBigUInt64LE(entriesLba, 72);
    sector.writeUInt32LE(header.entryCount, 80);
    sector.writeUInt32LE(header.entrySize, 84);
    sector.writeUInt32LE(entriesCrc, 88);
    sector.writeUInt32LE(crc32(sector.subarray(0, 92)), 16);
    return sector;
  };
  const padded = Buffer.alloc(Number(entrySectors) * SECTOR_BYTES);
  entries.copy(padded);
  // The primary keeps its entries where the image had them (LBA 2 in every image we write).
  const primaryGap = Buffer.alloc(Number(header.entriesLba - 2n) * SECTOR_BYTES);
  const mbr = Buffer.from(gpt.mbr);
  for (let slot = 0; slot < 4; slot += 1) {
    const at = 446 + 16 * slot;
    if (mbr[at + 4] === 0xee) mbr.writeUInt32LE(Number(lastLba > 0xffffffffn ? 0xffffffffn : lastLba), at + 12);
  }
  return {
    primary: Buffer.concat([mbr, makeHeader(1n, lastLba, header.entriesLba), primaryGap, padded]),
    backup: Buffer.concat([padded, makeHeader(lastLba, 1n, backupEntriesLba)]),
    backupLba: backupEntriesLba,
    seedLba,
    seedSectors,
    partitionNumber: free + 1,
  };
}
