import { open, mkdtemp, rm, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { guidBytes, parseGpt, planSeedPartition, SECTOR_BYTES } from '../../../src/netboot/gpt.js';
import { findTool, run } from '../../../src/process/index.js';

const MiB = 1024 * 1024;

/** An "image" partitioned by sfdisk the way the test base is: BIOS boot, ESP, root last. */
async function makeImage(path: string, sizeBytes: number): Promise<void> {
  const handle = await open(path, 'w');
  await handle.truncate(sizeBytes);
  await handle.close();
  await run('sfdisk', ['--quiet', path], {
    input: 'label: gpt\nstart=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649\nsize=16384, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\ntype=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709\n',
  });
}

describe.skipIf(findTool('sfdisk') === undefined)('the CIDATA partition GPT edit (sfdisk reads the result)', () => {
  it('adds a seed partition at the end of a larger disk, keeps the image partitions, and writes a valid primary and backup GPT', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kib-gpt-'));
    try {
      const image = join(dir, 'image.raw');
      await makeImage(image, 64 * MiB);
      const head = (await readFile(image)).subarray(0, 64 * 1024);
      const gpt = parseGpt(head);
      expect(gpt.used.map((entry) => entry.index)).toEqual([0, 1, 2]);

      const diskBytes = 256n * BigInt(MiB);
      const plan = planSeedPartition(gpt, { diskBytes, imageBytes: 64n * BigInt(MiB), seedBytes: 400_000, uniqueSeed: 'node-1/abc' });
      expect(plan.partitionNumber).toBe(4);
      expect(plan.seedSectors).toBe(2048n);
      expect((plan.seedLba + plan.seedSectors) % 2048n).toBe(0n);

      // Apply to a disk made from the image, as stage2 does with dd.
      const disk = join(dir, 'disk.raw');
      const handle = await open(disk, 'w');
      await handle.write(await readFile(image), 0, 64 * MiB, 0);
      await handle.truncate(Number(diskBytes));
      await handle.write(Buffer.alloc(400_000, 0x5a), 0, 400_000, Number(plan.seedLba) * SECTOR_BYTES);
      await handle.write(plan.backup, 0, plan.backup.length, Number(plan.backupLba) * SECTOR_BYTES);
      await handle.write(plan.primary, 0, plan.primary.length, 0);
      await handle.close();

      const verify = await run('sfdisk', ['--verify', disk], { allowFailure: true });
      expect(verify.stdout + verify.stderr).toMatch(/No errors detected/);
      expect(verify.exitCode).toBe(0);
      expect(verify.stdout + verify.stderr).not.toMatch(/mismatch|not on the end/);
      const dump = JSON.parse((await run('sfdisk', ['--json', disk])).stdout) as { partitiontable: { lastlba: number; partitions: { node: string; start: number; size: number; name?: string; type: string }[] } };
      const parts = dump.partitiontable.partitions;
      expect(parts).toHaveLength(4);
      expect(parts[3]).toMatchObject({ start: Number(plan.seedLba), size: 2048, name: 'CIDATA', type: 'EBD0A0A2-B9E5-4433-87C0-68B6B72699C7' });
      expect(parts[2]?.type).toBe('4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709');
      expect(dump.partitiontable.lastlba).toBe(Number(diskBytes / 512n) - 34);
      // The primary GPT parses again, and its new entry array CRC holds.
      const again = parseGpt((await readFile(disk)).subarray(0, 64 * 1024));
      expect(again.used).toHaveLength(4);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a disk too small for the image and the seed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kib-gpt-'));
    try {
      const image = join(dir, 'image.raw');
      await makeImage(image, 64 * MiB);
      const gpt = parseGpt((await readFile(image)).subarray(0, 64 * 1024));
      expect(() => planSeedPartition(gpt, { diskBytes: 64n * BigInt(MiB), imageBytes: 64n * BigInt(MiB), seedBytes: 1000, uniqueSeed: 'x' })).toThrow(/too small/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('GPT parsing', () => {
  it('rejects an image without a GPT', () => {
    expect(() => parseGpt(Buffer.alloc(64 * 1024))).toThrow(/no GPT/);
  });

  it('writes GUIDs in their mixed-endian on-disk form', () => {
    expect(guidBytes('C12A7328-F81F-11D2-BA4B-00A0C93EC93B').toString('hex')).toBe('28732ac11ff8d211ba4b00a0c93ec93b');
  });
});
