import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { stateDir as resolveStateDir } from '../core/dirs.js';
import { KibError } from '../core/errors.js';
import { isProcessRunning } from '../process/index.js';
import type { VmRunPaths } from './types.js';

/**
 * Who a VM belongs to. `process`: the kib process that started it (the default); the VM dies with
 * it. `cluster`: a cluster that outlives the process that started the VM; the VM is an orphan
 * only once the cluster's state file no longer says it is up (see reap.ts).
 */
export type VmOwner = { kind: 'process' } | { kind: 'cluster'; name: string; stateFile: string };

/** Recorded in each run dir so a later kib can tell whether the VM's owner is still alive. */
export interface RunDirOwner {
  pid: number;
  /** Kernel start time of the owner (clock ticks since boot), to tell a reused pid apart. */
  startTime: string | undefined;
  hostname: string;
  vmName: string;
  createdAt: string;
  /** Absent in run dirs written before owners had kinds: those are `process`. */
  owner?: VmOwner;
}

export interface RunDirOptions {
  /** Put the serial console log here instead of the run dir, so it outlives the VM (build logs). */
  consoleLogPath?: string;
  /**
   * A fixed id (`<state>/runs/<id>/`) instead of a random one, for a VM that is started again in
   * the same place (a cluster node after a restore). An existing dir of that id is reused.
   */
  id?: string;
  owner?: VmOwner;
}

export interface RunDir {
  id: string;
  dir: string;
  paths: VmRunPaths;
  ownerFile: string;
  qemuLogFile: string;
}

export const OWNER_FILE = 'owner.json';
export const QEMU_PID_FILE = 'qemu.pid';
/** sun_path holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

/** Where run dirs go when the caller names no state dir: the same place as build logs. */
export const defaultStateDir = resolveStateDir;

/** Creates `<state>/runs/<vm-id>/` with owner.json; the VM's pidfile, sockets and logs go there. */
export async function createRunDir(stateDir: string, vmName: string, options: RunDirOptions = {}): Promise<RunDir> {
  const { consoleLogPath } = options;
  const slug = vmName.toLowerCase().replace(/[^a-z0-9.-]+/g, '-').slice(0, 24) || 'vm';
  if (options.id !== undefined && !/^[a-z0-9][a-z0-9.-]{0,63}$/.test(options.id)) {
    throw new KibError('RUN_ID_INVALID', `run dir id ${JSON.stringify(options.id)} must be 1-64 of a-z, 0-9, '.', '-', starting with a letter or digit`);
  }
  const id = options.id ?? `${slug}-${randomBytes(4).toString('hex')}`;
  const dir = join(stateDir, 'runs', id);
  const paths: VmRunPaths = {
    pidFile: join(dir, QEMU_PID_FILE),
    qmpSocket: join(dir, 'qmp.sock'),
    guestAgentSocket: join(dir, 'qga.sock'),
    consoleLog: consoleLogPath ?? join(dir, 'console.log'),
  };
  for (const socket of [paths.qmpSocket, paths.guestAgentSocket]) {
    if (Buffer.byteLength(socket) > MAX_SOCKET_PATH_BYTES) {
      throw new KibError('STATE_DIR_TOO_LONG', `the VM socket path ${socket} is longer than the ${MAX_SOCKET_PATH_BYTES} bytes a unix socket allows`, {
        hint: 'Point KIB_STATE_DIR at a shorter directory.',
      });
    }
  }
  await mkdir(dir, { recursive: true });
  const owner: RunDirOwner = {
    pid: process.pid,
    startTime: processStartTime(process.pid),
    hostname: hostname(),
    vmName,
    createdAt: new Date().toISOString(),
    owner: options.owner ?? { kind: 'process' },
  };
  const ownerFile = join(dir, OWNER_FILE);
  await writeFile(ownerFile, `${JSON.stringify(owner, null, 2)}\n`);
  return { id, dir, paths, ownerFile, qemuLogFile: join(dir, 'qemu.log') };
}

/** Field 22 of /proc/<pid>/stat; undefined when the process is gone or /proc is unavailable. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) start with field 3.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}

/** Whether the kib process that created a run dir still runs (and is the same process). */
export function isOwnerAlive(owner: Pick<RunDirOwner, 'pid' | 'startTime'>): boolean {
  if (!isProcessRunning(owner.pid)) return false;
  if (owner.startTime === undefined) return true;
  return processStartTime(owner.pid) === owner.startTime;
}

/**
 * A free TCP port on 127.0.0.1: bind port 0, read what the kernel gave, release it. Another process
 * can take it before QEMU binds it, so callers retry on a host-forwarding failure.
 */
export function allocateLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('could not allocate a loopback port'))));
    });
  });
}
