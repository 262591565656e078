import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, readdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';

export const REPO_ROOT = resolve(import.meta.dirname, '..', '..');
export const KIB_BIN = join(REPO_ROOT, 'bin', 'kib.js');

export interface KibRun {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Isolated cache and state directories, so a test sees only what its own runs left. */
export async function makeKibDirs(prefix = 'kib-test-'): Promise<{ root: string; env: Record<string, string> }> {
  const root = await mkdtemp(join(tmpdir(), prefix));
  return { root, env: { KIB_CACHE_DIR: join(root, 'cache'), KIB_STATE_DIR: join(root, 'state') } };
}

/** Starts `kib` as a child process (the real CLI, compiled) and collects its output. */
export function startKib(args: readonly string[], options: { env?: Record<string, string>; cwd?: string; onStderrLine?: (line: string, child: ChildProcess) => void } = {}): { child: ChildProcess; done: Promise<KibRun> } {
  const child = spawn(process.execPath, [KIB_BIN, ...args], {
    cwd: options.cwd ?? REPO_ROOT,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let pending = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) options.onStderrLine?.(line, child);
  });
  const done = new Promise<KibRun>((resolvePromise, reject) => {
    child.on('error', reject);
    child.on('close', (exitCode, signal) => resolvePromise({ exitCode, signal, stdout, stderr }));
  });
  return { child, done };
}

export async function runKib(args: readonly string[], options: { env?: Record<string, string>; cwd?: string } = {}): Promise<KibRun> {
  return startKib(args, options).done;
}

/** Every file under dir with its size, for before/after comparisons ("the cache is as it was"). */
export async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (current: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(current, { withFileTypes: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    for (const entry of entries) {
      const path = join(current, entry.name);
      if (entry.isDirectory()) {
        out.push(`${relative(dir, path)}/`);
        await walk(path);
      } else {
        const info = await stat(path).catch(() => undefined);
        out.push(`${relative(dir, path)} ${info?.size ?? '?'}`);
      }
    }
  };
  await walk(dir);
  return out.sort();
}

/**
 * PIDs of live processes (never this one) whose command line mentions `needle`, e.g. a state or
 * temporary directory; `program` narrows to one executable, `ignoreZombies` skips exited children
 * nobody has reaped yet.
 */
export async function processesMentioning(needle: string, options: { program?: string; ignoreZombies?: boolean } = {}): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0');
      if (options.program !== undefined && !(cmdline[0] ?? '').includes(options.program)) continue;
      if (!cmdline.some((arg) => arg.includes(needle))) continue;
      if (options.ignoreZombies === true) {
        const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
        if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      }
      pids.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return pids;
}

/** PIDs of QEMU processes whose command line mentions `needle` (our state dir): none may outlive kib. */
export async function qemuProcessesMentioning(needle: string, options: { ignoreZombies?: boolean } = {}): Promise<number[]> {
  return await processesMentioning(needle, { ...options, program: 'qemu-system' });
}
