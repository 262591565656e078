/**
 * Every child we start lives in its own process group (so Ctrl-C on the terminal does not reach it
 * and we can stop its grandchildren with it). This registry remembers the live groups so that an
 * exit hook — and the CLI's second Ctrl-C — can kill them synchronously: nothing we start may
 * outlive the Node process.
 */

import { readFileSync } from 'node:fs';

const liveGroups = new Set<number>();
let hookInstalled = false;

export function registerGroup(pgid: number): void {
  installExitHook();
  liveGroups.add(pgid);
}

export function unregisterGroup(pgid: number): void {
  liveGroups.delete(pgid);
}

/** Process groups started by this process that have not been seen to exit yet. */
export function liveProcessGroups(): number[] {
  return [...liveGroups];
}

/**
 * SIGKILLs every process group we started and has not exited. Synchronous, so it can run in a
 * `process.on('exit')` handler or right before `process.exit(130)`.
 */
export function killAllDaemonsSync(): number {
  let killed = 0;
  for (const pgid of liveGroups) {
    if (signalGroup(pgid, 'SIGKILL')) killed += 1;
  }
  liveGroups.clear();
  return killed;
}

/** Sends a signal to a whole process group; false when the group no longer exists. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/** True while any process with this pid exists (EPERM means it exists but is not ours). */
export function isPidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * True while the process runs. Unlike isPidAlive, a zombie (exited, not yet reaped by its
 * parent — common under a container init that does not reap) counts as gone.
 */
export function isProcessRunning(pid: number): boolean {
  if (!isPidAlive(pid)) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state follows the parenthesised command name, which may itself contain spaces or ')'.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function installExitHook(): void {
  if (hookInstalled) return;
  hookInstalled = true;
  process.on('exit', () => {
    killAllDaemonsSync();
  });
}
