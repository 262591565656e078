import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { findTool, isProcessRunning, run } from '../../../src/process/index.js';
import { checkArtifactHygiene, detectFilesystem, imageOpts, qemuStorageDaemonFuseArgs, openArtifactFs, parseDebugfsList, parseDebugfsStat, parsePartitionTable, parseXfsBmap, parseXfsList } from '../../../src/verify/artifact-fs.js';
import type { ExpectedImage } from '../../../src/verify/expected.js';
import { hygieneChecks } from '../../../src/verify/hygiene.js';

const SBIN_PATH = `${process.env.PATH ?? ''}:/usr/sbin:/sbin`;
const has = (tool: string): boolean => findTool(tool, SBIN_PATH) !== undefined;
const tool = (name: string): string => findTool(name, SBIN_PATH) ?? name;

const MiB = 1024 * 1024;
const ROOT_START = 2 * MiB;
const ROOT_SIZE = 300 * MiB;

/** A sealed-looking root tree with one build leftover (the build user's key) to find. */
const TREE: Record<string, string> = {
  'etc/machine-id': '',
  'etc/hostname': '',
  'etc/passwd': 'root:x:0:0:root:/root:/bin/bash\n',
  'etc/ssh/sshd_config': 'PermitRootLogin no\n',
  'etc/systemd/network/99-dhcp.network': '[Match]\nName=*\n\n[Network]\nDHCP=yes\n',
  'var/log/messages': 'x'.repeat(70_000),
  'home/kib/.ssh/authorized_keys': 'ssh-ed25519 AAAA kib\n',
  'var/lib/cloud/seed/readme': 'kept\n',
};

const expected: ExpectedImage = {
  osFamily: 'redhat',
  kubernetesVersion: '1.36.1',
  kubernetesInstalled: true,
  kubernetesSkippedReason: null,
  selinux: 'permissive',
  firewall: true,
};

async function writeTree(root: string): Promise<void> {
  for (const [path, content] of Object.entries(TREE)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content);
  }
  await mkdir(join(root, 'usr/lib'), { recursive: true });
  await writeFile(join(root, 'usr/lib/os-release'), 'ID=rocky\n');
  await symlink('../usr/lib/os-release', join(root, 'etc/os-release'));
  await mkdir(join(root, 'tmp'), { recursive: true });
  await mkdir(join(root, 'var/tmp'), { recursive: true });
}

/** An mkfs.xfs protofile that copies the tree (mkfs.xfs can populate without mounting). */
async function xfsProto(root: string): Promise<string> {
  const lines = ['/dev/null', '0 0', 'd--755 0 0'];
  const walk = async (dir: string, depth: number): Promise<void> => {
    for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      const indent = ' '.repeat(depth);
      if (entry.isDirectory()) {
        lines.push(`${indent}${entry.name} d--755 0 0`);
        await walk(join(dir, entry.name), depth + 1);
        lines.push(`${indent}$`);
      } else if (entry.isSymbolicLink()) {
        lines.push(`${indent}${entry.name} l--777 0 0 ${await readlink(join(dir, entry.name))}`);
      } else {
        lines.push(`${indent}${entry.name} ---644 0 0 ${join(dir, entry.name)}`);
      }
    }
  };
  await walk(root, 1);
  lines.push('$');
  return `${lines.join('\n')}\n`;
}

/** GPT disk with a BIOS-boot partition and a Linux root partition holding `fsImage`. */
async function buildDisk(dir: string, fsImage: string, name: string): Promise<string> {
  const disk = join(dir, `${name}.raw`);
  await writeFile(disk, '');
  await run('truncate', ['-s', String(ROOT_START + ROOT_SIZE + MiB), disk]);
  await run(tool('sfdisk'), ['-q', disk], {
    input: `label: gpt\nstart=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649\nstart=${ROOT_START / 512}, size=${ROOT_SIZE / 512}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n`,
  });
  await run('dd', [`if=${fsImage}`, `of=${disk}`, 'bs=1M', `seek=${ROOT_START / MiB}`, 'conv=notrunc,sparse', 'status=none']);
  const qcow2 = join(dir, `${name}.qcow2`);
  await run('qemu-img', ['convert', '-c', '-O', 'qcow2', disk, qcow2]);
  return qcow2;
}

/** qemu-storage-daemon processes whose command line names this work dir. */
async function daemonPids(work: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.startsWith('qemu-storage-daemon') || cmdline.includes('/qemu-storage-daemon\0')) {
      if (cmdline.includes(work)) pids.push(Number(entry));
    }
  }
  return pids;
}

const fuseMissing = [...(existsSync('/dev/fuse') ? [] : ['/dev/fuse']), ...['qemu-storage-daemon', 'fusermount3'].filter((t) => !has(t))];
const fuseSkipReason = fuseMissing.length === 0 ? undefined : `needs ${fuseMissing.join(', ')} (qemu-system-common, fuse3)`;

const missingTools = ['mkfs.ext4', 'debugfs', 'mkfs.xfs', 'xfs_db', 'sfdisk', 'qemu-img'].filter((t) => !has(t));
const skipReason = missingTools.length === 0 ? undefined : `needs ${missingTools.join(', ')} (e2fsprogs, xfsprogs, fdisk, qemu-utils)`;

describe.skipIf(skipReason !== undefined)(`openArtifactFs on real disk images${skipReason === undefined ? '' : ` — skipped: ${String(skipReason)}`}`, () => {
  let dir: string;
  const disks: Record<'ext4' | 'xfs', string> = { ext4: '', xfs: '' };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kib-artifact-fs-'));
    const root = join(dir, 'tree');
    await writeTree(root);
    const ext4 = join(dir, 'root.ext4');
    await run(tool('mkfs.ext4'), ['-q', '-F', '-d', root, ext4, `${ROOT_SIZE / 1024}k`]);
    disks.ext4 = await buildDisk(dir, ext4, 'ext4');
    const xfs = join(dir, 'root.xfs');
    await run('truncate', ['-s', String(ROOT_SIZE), xfs]);
    await writeFile(join(dir, 'proto'), await xfsProto(root));
    await run(tool('mkfs.xfs'), ['-q', '-f', '-p', join(dir, 'proto'), xfs]);
    disks.xfs = await buildDisk(dir, xfs, 'xfs');
  }, 60_000);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  // Every access is listed; without FUSE the fuse variants report as skipped with the reason.
  const accesses = ['extract', 'fuse'] as const;
  const skipWithoutFuse = (ctx: TestContext, access: (typeof accesses)[number]): void => {
    if (access === 'fuse' && fuseSkipReason !== undefined) ctx.skip(fuseSkipReason);
  };
  for (const access of accesses) {
    for (const filesystem of ['ext4', 'xfs'] as const) {
      it(`reads files, listings and sizes of an ${filesystem} root in a compressed qcow2 (${access})`, async (ctx) => {
        skipWithoutFuse(ctx, access);
        const work = await mkdtemp(join(dir, 'work-'));
        await using fs = await openArtifactFs(disks[filesystem], { workDir: work, access });
        expect(fs.filesystem).toBe(filesystem);
        expect(fs.access).toBe(access);
        expect(fs.partition).toMatchObject({ index: 2, startBytes: ROOT_START, sizeBytes: ROOT_SIZE });
        expect(await fs.readFile('/etc/passwd')).toBe(TREE['etc/passwd']);
        expect(await fs.readFile('/var/log/messages')).toBe(TREE['var/log/messages']);
        expect(await fs.readFile('/etc/machine-id')).toBe('');
        expect(await fs.readFile('/etc/nope')).toBeUndefined();
        expect(await fs.stat('/var/log/messages')).toEqual({ type: 'file', sizeBytes: 70_000 });
        expect((await fs.stat('/etc/ssh'))?.type).toBe('dir');
        expect(await fs.stat('/nope/x')).toBeUndefined();
        expect((await fs.listDir('/etc'))?.map((e) => `${e.type} ${e.name}`).sort()).toEqual(['dir ssh', 'dir systemd', 'file hostname', 'file machine-id', 'file passwd', 'symlink os-release']);
        expect((await fs.stat('/etc/os-release'))?.type).toBe('symlink');
        expect(await fs.readFile('/etc/os-release')).toBeUndefined();
        expect(await fs.readFile('/usr/lib/os-release')).toBe('ID=rocky\n');
        expect(await fs.listDir('/var/lib/cloud/instances')).toBeUndefined();
      });
    }
  }

  for (const access of accesses) {
    it(`reads a raw artifact (${access})`, async (ctx) => {
      skipWithoutFuse(ctx, access);
      const work = await mkdtemp(join(dir, 'work-'));
      await using fs = await openArtifactFs(join(dir, 'xfs.raw'), { workDir: work, format: 'raw', access });
      expect(fs.filesystem).toBe('xfs');
      expect(await fs.readFile('/etc/passwd')).toBe(TREE['etc/passwd']);
    });
  }

  for (const filesystem of ['ext4', 'xfs'] as const) {
    it(`runs the hygiene list on an ${filesystem} artifact and finds the build user's leftovers`, async () => {
      const work = await mkdtemp(join(dir, 'work-'));
      const results = await checkArtifactHygiene(disks[filesystem], { workDir: work, expected, buildUser: 'kib' });
      expect(results.filter((r) => r.status !== 'pass').map((r) => `${r.status} ${r.id}: ${r.detail}`)).toEqual([
        'fail hygiene/no-authorized-keys: /home/kib/.ssh/authorized_keys',
        'fail hygiene/no-build-user: /home/kib',
      ]);
      expect(results).toHaveLength(hygieneChecks.length);
      expect(await readdir(work)).toEqual([]);
    });
  }

  it('leaves no daemon and no mount after close (fuse)', async (ctx) => {
    skipWithoutFuse(ctx, 'fuse');
    const work = await mkdtemp(join(dir, 'work-'));
    const fs = await openArtifactFs(disks.xfs, { workDir: work, access: 'fuse' });
    const mountpoint = join(work, 'artifact-root.raw');
    expect(await readFile('/proc/self/mountinfo', 'utf8')).toContain(` ${mountpoint} `);
    const daemons = await daemonPids(work);
    expect(daemons).toHaveLength(1);
    await fs.close();
    expect(await readFile('/proc/self/mountinfo', 'utf8')).not.toContain(` ${mountpoint} `);
    for (const pid of daemons) expect(isProcessRunning(pid)).toBe(false);
    expect(await readdir(work)).toEqual([]);
  });

  it('removes the extracted partition on close', async () => {
    const work = await mkdtemp(join(dir, 'work-'));
    const fs = await openArtifactFs(disks.ext4, { workDir: work, access: 'extract' });
    expect(await readdir(work)).toEqual(['artifact-root.raw']);
    await fs.close();
    expect(await readdir(work)).toEqual([]);
  });
});

describe('partition tables and superblocks', () => {
  it('reads an MBR table and recognizes ext4 and XFS magic', async () => {
    const mbr = Buffer.alloc(1024);
    mbr.writeUInt8(0x83, 446 + 4);
    mbr.writeUInt32LE(2048, 446 + 8);
    mbr.writeUInt32LE(4096, 446 + 12);
    mbr.writeUInt16LE(0xaa55, 510);
    expect(parsePartitionTable(mbr)).toEqual([{ index: 1, startBytes: 2048 * 512, sizeBytes: 4096 * 512, type: '83' }]);
    expect(parsePartitionTable(Buffer.alloc(1024))).toEqual([]);
    const ext = Buffer.alloc(2048);
    ext.writeUInt16LE(0xef53, 1080);
    expect(detectFilesystem(ext)).toBe('ext4');
    expect(detectFilesystem(Buffer.from('XFSB\0\0\0\0'))).toBe('xfs');
    expect(detectFilesystem(Buffer.alloc(2048))).toBeUndefined();
  });

  it('builds the qemu-storage-daemon export of one partition', () => {
    expect(qemuStorageDaemonFuseArgs({ imagePath: '/o/a.qcow2', format: 'qcow2', offsetBytes: 1048576, sizeBytes: 4096, mountpoint: '/w/root.raw' })).toEqual([
      '--blockdev', 'driver=file,node-name=file0,filename=/o/a.qcow2,read-only=on',
      '--blockdev', 'driver=qcow2,node-name=disk0,file=file0,read-only=on',
      '--blockdev', 'driver=raw,node-name=root0,file=disk0,offset=1048576,size=4096,read-only=on',
      '--export', 'type=fuse,id=root,node-name=root0,mountpoint=/w/root.raw,writable=off',
    ]);
    expect(() => qemuStorageDaemonFuseArgs({ imagePath: '/o/a,b', format: 'raw', offsetBytes: 0, sizeBytes: 1, mountpoint: '/w/x' })).toThrow('containing ","');
  });

  it('refuses paths qemu-img would split', () => {
    expect(() => imageOpts('/tmp/a,b.qcow2', 'qcow2', 0, 1)).toThrow('containing ","');
    expect(imageOpts('/o/a.qcow2', 'qcow2', 1048576, 512)).toBe('driver=raw,offset=1048576,size=512,file.driver=qcow2,file.file.driver=file,file.file.filename=/o/a.qcow2');
  });
});

describe('debugfs and xfs_db output', () => {
  it('parses debugfs stat and ls -p', () => {
    expect(parseDebugfsStat('Inode: 16   Type: regular    Mode:  0644   Flags: 0x80000\nUser:     0   Group:     0   Project:     0   Size: 75\n')).toEqual({ type: 'file', sizeBytes: 75 });
    expect(parseDebugfsList('/12/040755/0/0/.//\n/2/040755/0/0/..//\n/13/040755/0/0/ssh//\n/16/100644/0/0/pass wd/75/\n/20/120777/0/0/link/7/\n')).toEqual([
      { name: 'ssh', type: 'dir' },
      { name: 'pass wd', type: 'file', sizeBytes: 75 },
      { name: 'link', type: 'symlink', sizeBytes: 7 },
    ]);
  });

  it('parses xfs_db ls and bmap, skipping unwritten extents', () => {
    expect(
      parseXfsList('/etc:\n8          131                directory      0x0000002e   1 . (good)\n21         133                regular        0x0d6cd79c  10 machine-id (good)\n30         140                regular        0x0d6cd79d   7 a b (c) (good)\n'),
    ).toEqual([
      { name: 'machine-id', type: 'file' },
      { name: 'a b (c)', type: 'file' },
    ]);
    expect(parseXfsBmap('data offset 0 startblock 10 (0/10) count 1 flag 0\ndata offset 1 startblock 70000 (1/4464) count 2 flag 1\n')).toEqual([
      { fileBlock: 0, ag: 0, agBlock: 10, blocks: 1 },
    ]);
  });
});
