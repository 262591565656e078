import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { isOwnerAlive, processStartTime } from '../vm/run-dir.js';

/** Recorded in `<state>/builds/<id>/` so a later kib can tell whether the build still runs. */
export const BUILD_OWNER_FILE = 'owner.json';

/** A work dir without owner.json younger than this may belong to a build still starting. */
const CREATION_GRACE_MS = 60_000;

export interface BuildOwner {
  pid: number;
  /** Kernel start time of the owner (see processStartTime), to tell a reused pid apart. */
  startTime: string | undefined;
  hostname: string;
  buildId: string;
  createdAt: string;
}

export async function recordBuildOwner(buildDir: string, buildId: string): Promise<void> {
  const owner: BuildOwner = { pid: process.pid, startTime: processStartTime(process.pid), hostname: hostname(), buildId, createdAt: new Date().toISOString() };
  await writeFile(join(buildDir, BUILD_OWNER_FILE), `${JSON.stringify(owner, null, 2)}\n`);
}

export interface ReapedWorkDir {
  path: string;
  sizeBytes: number;
}

/**
 * Removes `<state>/builds/<id>/work` of every build whose owning kib is gone (killed, or
 * interrupted twice): the overlay disk left there is hundreds of MB. Logs stay; only work goes.
 * A build on another host (shared state dir) is never judged by this host's process table.
 */
export async function reapStaleWorkDirs(stateDir: string, options: { now?: number } = {}): Promise<ReapedWorkDir[]> {
  const buildsDir = join(stateDir, 'builds');
  const now = options.now ?? Date.now();
  let ids: string[];
  try {
    ids = await readdir(buildsDir);
  } catch {
    return [];
  }
  const reaped: ReapedWorkDir[] = [];
  for (const id of ids) {
    const workDir = join(buildsDir, id, 'work');
    const workStat = await stat(workDir).catch(() => undefined);
    if (workStat === undefined) continue;
    const owner = await readBuildOwner(join(buildsDir, id));
    if (owner === undefined) {
      if (now - workStat.mtimeMs < CREATION_GRACE_MS) continue;
    } else {
      if (owner.hostname !== hostname()) continue;
      if (isOwnerAlive(owner)) continue;
    }
    const sizeBytes = await treeSize(workDir);
    await rm(workDir, { recursive: true, force: true });
    reaped.push({ path: workDir, sizeBytes });
  }
  return reaped;
}

async function readBuildOwner(buildDir: string): Promise<BuildOwner | undefined> {
  try {
    const data = JSON.parse(await readFile(join(buildDir, BUILD_OWNER_FILE), 'utf8')) as Partial<BuildOwner>;
    if (typeof data.pid !== 'number') return undefined;
    return {
      pid: data.pid,
      startTime: typeof data.startTime === 'string' ? data.startTime : undefined,
      hostname: typeof data.hostname === 'string' ? data.hostname : hostname(),
      buildId: typeof data.buildId === 'string' ? data.buildId : '',
      createdAt: typeof data.createdAt === 'string' ? data.createdAt : '',
    };
  } catch {
    return undefined;
  }
}

/** Allocated bytes of a tree (sparse overlays count what they use, not their virtual size). */
export async function treeSize(path: string): Promise<number> {
  const info = await stat(path).catch(() => undefined);
  if (info === undefined) return 0;
  if (!info.isDirectory()) return info.blocks * 512;
  let total = 0;
  for (const entry of await readdir(path).catch(() => [] as string[])) total += await treeSize(join(path, entry));
  return total;
}
