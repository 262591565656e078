import { readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KibError } from '../../../src/core/errors.js';
import { allocateLoopbackPort, defaultStateDir } from '../../../src/vm/index.js';
import { createRunDir, isOwnerAlive, processStartTime } from '../../../src/vm/run-dir.js';
import { tempDir } from '../process/helpers.js';

describe('run dirs', () => {
  it('creates runs/<vm-id>/ with an owner.json naming this process', async () => {
    const state = tempDir('rundir');
    const runDir = await createRunDir(state, 'Build VM');
    expect(runDir.id).toMatch(/^build-vm-[0-9a-f]{8}$/);
    expect(runDir.dir).toBe(join(state, 'runs', runDir.id));
    expect(statSync(runDir.dir).isDirectory()).toBe(true);
    expect(runDir.paths).toEqual({
      pidFile: join(runDir.dir, 'qemu.pid'),
      qmpSocket: join(runDir.dir, 'qmp.sock'),
      guestAgentSocket: join(runDir.dir, 'qga.sock'),
      consoleLog: join(runDir.dir, 'console.log'),
    });
    const owner = JSON.parse(readFileSync(runDir.ownerFile, 'utf8')) as { pid: number; startTime: string; vmName: string };
    expect(owner.pid).toBe(process.pid);
    expect(owner.vmName).toBe('Build VM');
    expect(owner.startTime).toBe(processStartTime(process.pid));
    expect(isOwnerAlive(owner)).toBe(true);
    // Same pid, different start time: the pid was reused by another process.
    expect(isOwnerAlive({ pid: process.pid, startTime: '1' })).toBe(false);
  });

  it('takes a fixed id (a cluster node started again in the same place) and records the owner kind', async () => {
    const state = tempDir('rundir-fixed');
    const owner = { kind: 'cluster' as const, name: 'dev', stateFile: '/state/clusters/dev/state.json' };
    const first = await createRunDir(state, 'node1', { id: 'dev-node1', owner });
    expect(first.dir).toBe(join(state, 'runs', 'dev-node1'));
    expect((JSON.parse(readFileSync(first.ownerFile, 'utf8')) as { owner: unknown }).owner).toEqual(owner);
    const again = await createRunDir(state, 'node1', { id: 'dev-node1', owner });
    expect(again.dir).toBe(first.dir);
    expect((JSON.parse(readFileSync((await createRunDir(state, 'x')).ownerFile, 'utf8')) as { owner: unknown }).owner).toEqual({ kind: 'process' });
    await expect(createRunDir(state, 'x', { id: '../escape' })).rejects.toMatchObject({ code: 'RUN_ID_INVALID' });
  });

  it('can put the console log outside the run dir so it outlives the VM', async () => {
    const state = tempDir('rundir-console');
    const runDir = await createRunDir(state, 'vm', { consoleLogPath: '/logs/build-1/console.log' });
    expect(runDir.paths.consoleLog).toBe('/logs/build-1/console.log');
  });

  it('refuses a state dir so deep that the sockets would not fit in a unix socket address', async () => {
    const state = join(tempDir('rundir-long'), 'x'.repeat(90));
    const error = await createRunDir(state, 'vm').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KibError);
    expect((error as KibError).code).toBe('STATE_DIR_TOO_LONG');
    expect((error as KibError).hint).toContain('KIB_STATE_DIR');
  });

  it('resolves the state dir from KIB_STATE_DIR, then XDG_STATE_HOME, then the home directory', () => {
    expect(defaultStateDir({ KIB_STATE_DIR: '/s', XDG_STATE_HOME: '/x' })).toBe('/s');
    expect(defaultStateDir({ XDG_STATE_HOME: '/x' })).toBe('/x/kube-image-builder');
    expect(defaultStateDir({ KIB_STATE_DIR: '' })).toMatch(/\/\.local\/state\/kube-image-builder$/);
  });
});

describe('allocateLoopbackPort', () => {
  it('returns a port that is free to bind on 127.0.0.1', async () => {
    const port = await allocateLoopbackPort();
    expect(port).toBeGreaterThan(1024);
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    await new Promise((resolve) => server.close(resolve));
  });
});
