import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { isProcessRunning, run, spawnDaemon, type StartedDaemon } from '../../../src/process/index.js';
import { CREATION_GRACE_MS, decideReap, isClusterUp, reapOrphans, type RunDirFacts } from '../../../src/vm/index.js';
import { processStartTime } from '../../../src/vm/run-dir.js';
import { compileProcessModule, program, tempDir, waitForMatch, waitUntilGone } from '../process/helpers.js';

/** The pid of a process that has come and gone. */
async function deadPid(): Promise<number> {
  const result = await run(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(result.stdout);
}

/** A run dir as startVm leaves it, with a real (guest-less) QEMU whose pidfile lives there. */
async function fakeRun(state: string, id: string, owner: { pid: number; startTime: string | undefined; owner?: unknown }): Promise<{ dir: string; qemu: StartedDaemon }> {
  const dir = join(state, 'runs', id);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'owner.json'), JSON.stringify({ ...owner, hostname: 'h', vmName: id, createdAt: '' }));
  const qemu = spawnDaemon('qemu-system-x86_64', [
    '-machine',
    'none',
    '-nodefaults',
    '-display',
    'none',
    '-qmp',
    `unix:${join(dir, 'qmp.sock')},server=on,wait=off`,
    '-pidfile',
    join(dir, 'qemu.pid'),
  ]);
  await waitForMatch(join(dir, 'qemu.pid'), /^(\d+)/);
  return { dir, qemu };
}

describe('reapOrphans', () => {
  it('kills the QEMU of a run dir whose owner is dead and removes the dir', async () => {
    const state = tempDir('reap');
    const { dir, qemu } = await fakeRun(state, 'orphan-1', { pid: await deadPid(), startTime: undefined });
    expect(await reapOrphans(state)).toBe(1);
    // QEMU handles SIGTERM and exits by itself ("terminating on signal 15").
    await qemu.exited;
    expect(qemu.isRunning()).toBe(false);
    expect(existsSync(dir)).toBe(false);
  });

  it('leaves VMs of a live owner alone', async () => {
    const state = tempDir('reap-live');
    const { dir, qemu } = await fakeRun(state, 'mine-1', { pid: process.pid, startTime: processStartTime(process.pid) });
    try {
      expect(await reapOrphans(state)).toBe(0);
      expect(qemu.isRunning()).toBe(true);
      expect(existsSync(dir)).toBe(true);
    } finally {
      await qemu.stop({ termMs: 1_000 });
    }
  });

  it('never kills a process that merely reuses the recorded pid, but still removes the stale dir', async () => {
    const state = tempDir('reap-reused');
    const dir = join(state, 'runs', 'stale-1');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'owner.json'), JSON.stringify({ pid: await deadPid() }));
    const bystander = spawnDaemon(process.execPath, [program('ignore-sigterm.js')]);
    try {
      writeFileSync(join(dir, 'qemu.pid'), `${bystander.pid}\n`);
      expect(await reapOrphans(state)).toBe(0);
      expect(isProcessRunning(bystander.pid)).toBe(true);
      expect(existsSync(dir)).toBe(false);
    } finally {
      await bystander.stop({ termMs: 200 });
    }
  });

  it('treats a dead owner whose pid now belongs to another process as dead', async () => {
    const state = tempDir('reap-owner-reused');
    // Our own pid, but a start time that is not ours: the owner that wrote this is gone.
    const { dir, qemu } = await fakeRun(state, 'orphan-2', { pid: process.pid, startTime: '12345' });
    expect(readFileSync(join(dir, 'owner.json'), 'utf8')).toContain('12345');
    expect(await reapOrphans(state)).toBe(1);
    // The reaper saw the process gone in /proc; our own exit event for it may land a moment later.
    await qemu.exited;
    expect(qemu.isRunning()).toBe(false);
  });

  it('returns 0 when there is no runs dir', async () => {
    expect(await reapOrphans(tempDir('reap-empty'))).toBe(0);
  });
});

describe('decideReap', () => {
  const dead = { pid: 424242, startTime: '1' };
  const facts = (overrides: Partial<RunDirFacts>): RunDirFacts => ({ owner: dead, ageMs: 10 * CREATION_GRACE_MS, ownerProcessAlive: false, clusterUp: undefined, ...overrides });
  const cluster = { kind: 'cluster' as const, name: 'dev', stateFile: '/state/clusters/dev/state.json' };

  it('keeps the VM of a live process, and reaps it once that process is gone', () => {
    expect(decideReap(facts({ ownerProcessAlive: true })).action).toBe('keep');
    expect(decideReap(facts({}))).toEqual({ action: 'reap', reason: 'the process that started it (pid 424242) is gone' });
    expect(decideReap(facts({ owner: { ...dead, owner: { kind: 'process' } } })).action).toBe('reap');
  });

  it('keeps a cluster VM after its starting process is gone while the cluster is up', () => {
    expect(decideReap(facts({ owner: { ...dead, owner: cluster }, clusterUp: true }))).toEqual({ action: 'keep', reason: 'it belongs to cluster dev, which is up' });
  });

  it('reaps a cluster VM when the cluster is down or its state is unknown', () => {
    expect(decideReap(facts({ owner: { ...dead, owner: cluster }, clusterUp: false })).action).toBe('reap');
    expect(decideReap(facts({ owner: { ...dead, owner: cluster }, clusterUp: undefined })).reason).toContain('/state/clusters/dev/state.json');
  });

  it('keeps a cluster VM whose starting process still runs (kib up is still creating the cluster)', () => {
    expect(decideReap(facts({ owner: { ...dead, owner: cluster }, ownerProcessAlive: true, clusterUp: false })).action).toBe('keep');
  });

  it('gives a run dir without owner.json time to be created, then reaps it', () => {
    expect(decideReap(facts({ owner: undefined, ageMs: 1_000 })).action).toBe('keep');
    expect(decideReap(facts({ owner: undefined, ageMs: CREATION_GRACE_MS + 1 })).action).toBe('reap');
  });

  it('reads a cluster as up only from a state file that says status "up"', async () => {
    const dir = tempDir('cluster-state');
    const file = join(dir, 'state.json');
    expect(await isClusterUp(file)).toBe(false);
    writeFileSync(file, '{"status":"up"}');
    expect(await isClusterUp(file)).toBe(true);
    writeFileSync(file, '{"status":"down"}');
    expect(await isClusterUp(file)).toBe(false);
    writeFileSync(file, 'not json');
    expect(await isClusterUp(file)).toBe(false);
  });
});

describe('reapOrphans and clusters', () => {
  it('spares the QEMU of a live cluster whose starting process is gone, and reaps it once the cluster is down', async () => {
    const state = tempDir('reap-cluster');
    const stateFile = join(state, 'cluster-state.json');
    writeFileSync(stateFile, JSON.stringify({ status: 'up' }));
    const { dir, qemu } = await fakeRun(state, 'cluster-dev-node1', { pid: await deadPid(), startTime: undefined, owner: { kind: 'cluster', name: 'dev', stateFile } });
    try {
      expect(await reapOrphans(state)).toBe(0);
      expect(qemu.isRunning()).toBe(true);
      expect(existsSync(dir)).toBe(true);
      writeFileSync(stateFile, JSON.stringify({ status: 'down' }));
      expect(await reapOrphans(state)).toBe(1);
      await qemu.exited;
      expect(existsSync(dir)).toBe(false);
    } finally {
      await qemu.stop({ termMs: 1_000 });
    }
  });
});

describe('VMs of a kib that goes away', () => {
  let compiled = '';
  let blankDisk = '';
  beforeAll(async () => {
    compiled = compileProcessModule(['src/vm', 'src/report', 'src/ssh']);
    blankDisk = join(tempDir('orphan-disk'), 'blank.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', blankDisk, '16M']);
  });

  it('are killed by the exit hook when kib exits without stopping them', async () => {
    const state = tempDir('orphan-exit');
    const result = await run(process.execPath, [program('start-vm.js'), compiled, state, blankDisk, '--exit'], { timeoutMs: 30_000 });
    const [, pid, runDir] = /^vm (\d+) (\S+)$/m.exec(result.stdout) ?? [];
    expect(Number(pid)).toBeGreaterThan(0);
    expect(await waitUntilGone(Number(pid), 3_000)).toBe(true);
    // Nothing stopped it properly, so its run dir is still there for the next kib to clean up.
    expect(existsSync(runDir ?? '')).toBe(true);
    expect(await reapOrphans(state)).toBe(0);
    expect(existsSync(runDir ?? '')).toBe(false);
  });

  it('survive a SIGKILLed kib, and the next kib reaps them', async () => {
    const state = tempDir('orphan-kill');
    const child = spawnDaemon(process.execPath, [program('start-vm.js'), compiled, state, blankDisk], { stdoutFile: join(state, 'out.log') });
    const line = await waitForMatch(join(state, 'out.log'), /^(vm \d+ \S+)$/m, 20_000);
    const [, pid, runDir] = line.split(' ');
    // SIGKILL to the kib process alone (not its group): no exit hook runs, QEMU lives on.
    process.kill(child.pid, 'SIGKILL');
    await child.exited;
    expect(isProcessRunning(Number(pid))).toBe(true);
    expect(await reapOrphans(state)).toBe(1);
    expect(await waitUntilGone(Number(pid), 3_000)).toBe(true);
    expect(existsSync(runDir ?? '')).toBe(false);
  });
});
