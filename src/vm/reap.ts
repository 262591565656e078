import { readFileSync } from 'node:fs';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isProcessRunning, signalGroup } from '../process/index.js';
import { isOwnerAlive, OWNER_FILE, QEMU_PID_FILE, type RunDirOwner, type VmOwner } from './run-dir.js';

/** A run dir without owner.json younger than this may still be being created. */
export const CREATION_GRACE_MS = 60_000;

/** What the reaper knows about one run dir. */
export interface RunDirFacts {
  /** owner.json, or undefined when it is missing or unreadable. */
  owner: (Pick<RunDirOwner, 'pid' | 'startTime'> & { owner?: VmOwner }) | undefined;
  ageMs: number;
  /** The process that started the VM still runs (and is the same process). */
  ownerProcessAlive: boolean;
  /** For a cluster's VM: its state file says the cluster is up; undefined for other owners. */
  clusterUp: boolean | undefined;
}

export type ReapDecision = { action: 'keep' | 'reap'; reason: string };

/**
 * Whether a run dir's VM is an orphan. Pure, so every case is unit-tested: a VM is kept while the
 * process that started it runs, or — for a VM that belongs to a cluster, which outlives the
 * process that started it — while the cluster's state file says it is up.
 */
export function decideReap(facts: RunDirFacts): ReapDecision {
  if (facts.owner === undefined) {
    return facts.ageMs < CREATION_GRACE_MS
      ? { action: 'keep', reason: 'no owner.json yet, and young enough to be still being created' }
      : { action: 'reap', reason: 'no readable owner.json' };
  }
  if (facts.ownerProcessAlive) return { action: 'keep', reason: `the process that started it (pid ${facts.owner.pid}) still runs` };
  const owner = facts.owner.owner ?? { kind: 'process' };
  if (owner.kind === 'cluster') {
    return facts.clusterUp === true
      ? { action: 'keep', reason: `it belongs to cluster ${owner.name}, which is up` }
      : { action: 'reap', reason: `it belongs to cluster ${owner.name}, whose state file ${owner.stateFile} does not say it is up` };
  }
  return { action: 'reap', reason: `the process that started it (pid ${facts.owner.pid}) is gone` };
}

/**
 * A cluster's state file (written by whoever owns the cluster) says it is up: JSON with
 * `"status": "up"`. Missing, unreadable or any other status: not up.
 */
export async function isClusterUp(stateFile: string): Promise<boolean> {
  try {
    const data = JSON.parse(await readFile(stateFile, 'utf8')) as { status?: unknown };
    return data.status === 'up';
  } catch {
    return false;
  }
}

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
    const ownerProcessAlive = owner !== undefined && isOwnerAlive(owner);
    const cluster = owner?.owner?.kind === 'cluster' ? owner.owner : undefined;
    const decision = decideReap({
      owner,
      ageMs: await stat(dir).then((s) => Date.now() - s.mtimeMs).catch(() => 0),
      ownerProcessAlive,
      clusterUp: cluster === undefined || ownerProcessAlive ? undefined : await isClusterUp(cluster.stateFile),
    });
    if (decision.action === 'keep') continue;
    const qemuPid = await readPid(join(dir, QEMU_PID_FILE));
    if (qemuPid !== undefined && isQemuOf(qemuPid, dir)) {
      if (await killAndWait(qemuPid)) killed += 1;
      else continue; // keep the dir: its QEMU is still there
    }
    await rm(dir, { recursive: true, force: true });
  }
  return killed;
}

async function readOwner(dir: string): Promise<RunDirFacts['owner']> {
  try {
    const data = JSON.parse(await readFile(join(dir, OWNER_FILE), 'utf8')) as Partial<RunDirOwner>;
    if (typeof data.pid !== 'number') return undefined;
    return { pid: data.pid, startTime: typeof data.startTime === 'string' ? data.startTime : undefined, ...(parseOwner(data.owner) ?? {}) };
  } catch {
    return undefined;
  }
}

function parseOwner(value: unknown): { owner: VmOwner } | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const owner = value as Record<string, unknown>;
  if (owner.kind === 'cluster' && typeof owner.name === 'string' && typeof owner.stateFile === 'string') {
    return { owner: { kind: 'cluster', name: owner.name, stateFile: owner.stateFile } };
  }
  return { owner: { kind: 'process' } };
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
export function isQemuOf(pid: number, runDir: string): boolean {
  if (!isProcessRunning(pid)) return false;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return /qemu-system/.test(cmdline[0] ?? '') && cmdline.some((arg) => arg.includes(`${runDir}/`));
  } catch {
    return false;
  }
}

export async function killAndWait(pid: number): Promise<boolean> {
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
