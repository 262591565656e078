import { readFileSync } from 'node:fs';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isProcessRunning, signalGroup } from '../process/index.js';
import { isOwnerAlive, OWNER_FILE, QEMU_PID_FILE, type RunDirOwner } from './run-dir.js';

/** A run dir without owner.json younger than this may still be being created. */
const CREATION_GRACE_MS = 60_000;

/**
 * Cleans up after a kib that was killed (SIGKILL, a crashed test runner): for every run dir whose
 * owner is gone, kills its QEMU — only after checking that the pid really is a QEMU of that run
 * dir, since pids are reused — and removes the dir. Returns how many QEMU processes were killed.
 */
export async function reapOrphans(stateDir: string): Promise<number> {
  const runsDir = join(stateDir, 'runs');
  let entries: string[];
  try {
    entries = await readdir(runsDir);
  } catch {
    return 0;
  }
  let killed = 0;
  for (const entry of entries) {
    const dir = join(runsDir, entry);
    const owner = await readOwner(dir);
    if (owner === undefined) {
      const age = await stat(dir).then((s) => Date.now() - s.mtimeMs).catch(() => 0);
      if (age < CREATION_GRACE_MS) continue;
    } else if (isOwnerAlive(owner)) {
      continue;
    }
    const qemuPid = await readPid(join(dir, QEMU_PID_FILE));
    if (qemuPid !== undefined && isQemuOf(qemuPid, dir)) {
      if (await killAndWait(qemuPid)) killed += 1;
      else continue; // keep the dir: its QEMU is still there
    }
    await rm(dir, { recursive: true, force: true });
  }
  return killed;
}

async function readOwner(dir: string): Promise<Pick<RunDirOwner, 'pid' | 'startTime'> | undefined> {
  try {
    const data = JSON.parse(await readFile(join(dir, OWNER_FILE), 'utf8')) as Partial<RunDirOwner>;
    if (typeof data.pid !== 'number') return undefined;
    return { pid: data.pid, startTime: typeof data.startTime === 'string' ? data.startTime : undefined };
  } catch {
    return undefined;
  }
}

async function readPid(path: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(path, 'utf8')).trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The process runs and its command line names this run dir (its sockets and pidfile live there). */
function isQemuOf(pid: number, runDir: string): boolean {
  if (!isProcessRunning(pid)) return false;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return /qemu-system/.test(cmdline[0] ?? '') && cmdline.some((arg) => arg.includes(`${runDir}/`));
  } catch {
    return false;
  }
}

async function killAndWait(pid: number): Promise<boolean> {
  // QEMU runs as the leader of its own process group; take any helper it started with it.
  if (!signalGroup(pid, 'SIGTERM')) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      return !isProcessRunning(pid);
    }
  }
  if (await goneWithin(pid, 5_000)) return true;
  if (!signalGroup(pid, 'SIGKILL')) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone in between
    }
  }
  return await goneWithin(pid, 5_000);
}

async function goneWithin(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!isProcessRunning(pid)) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return !isProcessRunning(pid);
}
