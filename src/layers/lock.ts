import { open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { CancelledError, KibError } from '../core/errors.js';
import { isProcessRunning } from '../process/index.js';
import { processStartTime as startTimeOf } from '../vm/run-dir.js';

const UNWRITTEN_GRACE_MS = 5_000;

/** What a lock file holds: who took it, to tell a live holder from one that died holding it. */
export interface LockOwner {
  pid: number;
  /** Kernel start time of the holder (field 22 of /proc/<pid>/stat), to tell a reused pid apart. */
  startTime: string | undefined;
  hostname: string;
  acquiredAt: string;
}

export interface HeldLock {
  path: string;
  release(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * A lock across processes, without native code: the lock file is created with O_EXCL and holds
 * its owner's pid. A waiter that finds the owner gone (same host, pid not running or reused)
 * breaks the lock: it renames the file away first, so of two waiters breaking at once only one
 * succeeds, then retries. Waits with a deadline and honours `signal`.
 */
export async function acquireLock(path: string, options: { timeoutMs?: number; signal?: AbortSignal; pollMs?: number } = {}): Promise<HeldLock> {
  const deadline = Date.now() + (options.timeoutMs ?? 600_000);
  let pollMs = options.pollMs ?? 20;
  for (;;) {
    if (options.signal?.aborted === true) throw new CancelledError(`Waiting for ${path}`);
    const owner: LockOwner = { pid: process.pid, startTime: startTimeOf(process.pid), hostname: hostname(), acquiredAt: new Date().toISOString() };
    try {
      const handle = await open(path, 'wx');
      try {
        await handle.writeFile(`${JSON.stringify(owner)}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      let released = false;
      const release = async (): Promise<void> => {
        if (released) return;
        released = true;
        // Only remove the file if it is still ours (it could have been broken as stale).
        const now = await readOwner(path);
        if (now !== undefined && now.pid === owner.pid && now.acquiredAt === owner.acquiredAt) await unlink(path).catch(() => undefined);
      };
      return { path, release, [Symbol.asyncDispose]: release };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = await readOwner(path);
    if (holder !== undefined && isStale(holder)) {
      await breakLock(path, holder);
      continue;
    }
    if (holder === undefined) {
      // Created but not yet written (or its writer died in between): judge it only once it is
      // older than the moment a writer needs.
      const info = await stat(path).catch(() => undefined);
      if (info === undefined) continue; // gone meanwhile
      if (Date.now() - info.mtimeMs > UNWRITTEN_GRACE_MS) {
        await breakLock(path, undefined);
        continue;
      }
    }
    if (Date.now() > deadline) {
      throw new KibError('LOCK_TIMEOUT', `Timed out waiting for the lock ${path}${holder === undefined ? '' : ` held by pid ${holder.pid} since ${holder.acquiredAt}`}`, {
        hint: 'Another kib is using the layer store. If no kib runs, remove the lock file.',
      });
    }
    await new Promise((resolve) => setTimeout(resolve, pollMs));
    pollMs = Math.min(pollMs * 2, 250);
  }
}

function isStale(owner: LockOwner): boolean {
  if (owner.hostname !== hostname()) return false;
  if (!isProcessRunning(owner.pid)) return true;
  return owner.startTime !== undefined && startTimeOf(owner.pid) !== owner.startTime;
}

async function breakLock(path: string, seen: LockOwner | undefined): Promise<void> {
  const aside = `${path}.stale-${process.pid}-${Date.now()}`;
  try {
    await rename(path, aside);
  } catch {
    return; // someone else broke or released it
  }
  // Between reading the owner and the rename, the stale lock may have been broken and re-taken by
  // a live process; if what was moved aside is not what was judged stale, put it back.
  const moved = await readOwner(aside);
  if (moved !== undefined && (seen === undefined || moved.pid !== seen.pid || moved.acquiredAt !== seen.acquiredAt)) {
    await rename(aside, path).catch(() => undefined);
    return;
  }
  await unlink(aside).catch(() => undefined);
}

async function readOwner(path: string): Promise<LockOwner | undefined> {
  try {
    const data = JSON.parse(await readFile(path, 'utf8')) as Partial<LockOwner>;
    if (typeof data.pid !== 'number' || typeof data.acquiredAt !== 'string') return undefined;
    return { pid: data.pid, startTime: typeof data.startTime === 'string' ? data.startTime : undefined, hostname: data.hostname ?? hostname(), acquiredAt: data.acquiredAt };
  } catch {
    return undefined;
  }
}
