/**
 * A newc ("070701") cpio archive, the format the kernel unpacks as an initramfs
 * (Documentation/driver-api/early-userspace/buffer-format.rst in the kernel tree). Written here
 * rather than with `cpio -o` so device nodes (/dev/console) need no mknod and no root, and every
 * field (owner 0:0, mtime 0) is fixed: the same entries give the same bytes.
 */

export type CpioEntry =
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'file'; path: string; mode?: number; data: Buffer }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'char'; path: string; mode?: number; major: number; minor: number };

const TYPE_BITS = { dir: 0o040000, file: 0o100000, symlink: 0o120000, char: 0o020000 } as const;

const hex8 = (value: number): string => value.toString(16).padStart(8, '0');
const pad4 = (length: number): Buffer => Buffer.alloc((4 - (length % 4)) % 4);

function record(ino: number, mode: number, name: string, data: Buffer, rdev: { major: number; minor: number } = { major: 0, minor: 0 }, nlink = 1): Buffer {
  const nameBytes = Buffer.from(`${name}\0`, 'utf8');
  const header = Buffer.from(
    [
      '070701',
      hex8(ino),
      hex8(mode),
      hex8(0), // uid
      hex8(0), // gid
      hex8(nlink),
      hex8(0), // mtime
      hex8(data.length),
      hex8(0), // dev major
      hex8(0), // dev minor
      hex8(rdev.major),
      hex8(rdev.minor),
      hex8(nameBytes.length),
      hex8(0), // check
    ].join(''),
    'latin1',
  );
  const head = Buffer.concat([header, nameBytes]);
  return Buffer.concat([head, pad4(head.length), data, pad4(data.length)]);
}

/** Entries are written in path order, so parents come before children. */
export function renderNewcCpio(entries: readonly CpioEntry[]): Buffer {
  const sorted = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const parts: Buffer[] = [];
  sorted.forEach((entry, index) => {
    const ino = index + 1;
    const path = entry.path.replace(/^\/+/, '');
    switch (entry.type) {
      case 'dir':
        parts.push(record(ino, TYPE_BITS.dir | (entry.mode ?? 0o755), path, Buffer.alloc(0), undefined, 2));
        break;
      case 'file':
        parts.push(record(ino, TYPE_BITS.file | (entry.mode ?? 0o644), path, entry.data));
        break;
      case 'symlink':
        parts.push(record(ino, TYPE_BITS.symlink | 0o777, path, Buffer.from(entry.target, 'utf8')));
        break;
      case 'char':
        parts.push(record(ino, TYPE_BITS.char | (entry.mode ?? 0o600), path, Buffer.alloc(0), { major: entry.major, minor: entry.minor }));
        break;
    }
  });
  parts.push(record(0, 0, 'TRAILER!!!', Buffer.alloc(0), undefined, 1));
  const body = Buffer.concat(parts);
  // Pad to 512 bytes like cpio does; the kernel ignores the zeros.
  return Buffer.concat([body, Buffer.alloc((512 - (body.length % 512)) % 512)]);
}
