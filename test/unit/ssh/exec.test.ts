import { writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CommandError, TimeoutError, VmExitedError } from '../../../src/core/errors.js';
import type { DaemonExit } from '../../../src/process/index.js';
import { generateKeyPair, sshExec, stillWaitingMessage, waitForSsh, type SshTarget } from '../../../src/ssh/index.js';
import { allocateLoopbackPort, readConsoleTail, type WatchedVm } from '../../../src/vm/index.js';
import { tempDir } from '../process/helpers.js';

// No sshd runs on the test host; these check how failures to reach one are reported.
// Logging in for real is covered by test/vm/vm-lifecycle.test.ts.

const servers: Server[] = [];
const connections: Socket[] = [];
afterEach(async () => {
  for (const socket of connections.splice(0)) socket.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
});

async function target(): Promise<SshTarget> {
  const keys = await generateKeyPair(tempDir('ssh-exec'));
  return { host: '127.0.0.1', port: await allocateLoopbackPort(), user: 'kib', privateKeyPath: keys.privateKeyPath };
}

/** A port that accepts connections and never says anything, like a guest that is still booting. */
async function silentPort(): Promise<number> {
  const server = createServer((socket) => connections.push(socket));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const address = server.address();
  return typeof address === 'object' && address !== null ? address.port : 0;
}

describe('sshExec', () => {
  it('reports an unreachable guest as exit 255 from ssh', async () => {
    const t = await target();
    const result = await sshExec(t, 'true', { allowFailure: true, timeoutMs: 20_000 });
    expect(result.exitCode).toBe(255);
    expect(result.stderr).toContain('Connection refused');
    const error = await sshExec(t, ['uname', '-r'], { timeoutMs: 20_000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CommandError);
    expect((error as CommandError).exitCode).toBe(255);
    expect((error as CommandError).command.at(-1)).toBe('uname -r');
  });
});

describe('waitForSsh', () => {
  it('times out with the last ssh error when nothing answers', async () => {
    const t = await target();
    const error = await waitForSsh(t, { vm: undefined, timeoutMs: 1_500, intervalMs: 200 }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'TIMEOUT' });
    expect((error as Error).message).toContain(`SSH login as kib on 127.0.0.1:${t.port} did not happen`);
    expect((error as Error).message).toContain('Connection refused');
  });

  it('reports that it is still waiting, with the time waited and the last ssh error, and stops reporting when done', async () => {
    const t = await target();
    const beats: string[] = [];
    await waitForSsh(t, {
      vm: undefined,
      timeoutMs: 1_700,
      intervalMs: 100,
      stillWaitingEveryMs: 500,
      onStillWaiting: (message) => beats.push(message),
    }).catch(() => undefined);
    const count = beats.length;
    expect(count).toBeGreaterThanOrEqual(2);
    expect(beats[0]).toMatch(/^still waiting for SSH \(\d+ s; last: .*Connection refused/);
    await new Promise((r) => setTimeout(r, 1_200));
    expect(beats).toHaveLength(count);
  });

  it('formats minutes in the still-waiting message and keeps only the last line of the error', () => {
    expect(stillWaitingMessage('cloud-init', 95_000, 'line one\nConnection reset by peer\n')).toBe('still waiting for cloud-init (1 min 35 s; last: Connection reset by peer)');
    expect(stillWaitingMessage('SSH', 30_400, '')).toBe('still waiting for SSH (30 s)');
  });

  it('gives up on a handshake that hangs when the deadline comes, without waiting for ssh', async () => {
    const t = { ...(await target()), port: await silentPort() };
    const started = Date.now();
    const error = await waitForSsh(t, { vm: undefined, timeoutMs: 1_000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TimeoutError);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('fails at once when the VM exits while waiting', async () => {
    const t = await target();
    const consoleLogPath = join(tempDir('ssh-vm'), 'console.log');
    writeFileSync(consoleLogPath, 'Booting from Hard Disk...\nBoot failed: not a bootable disk\n');
    let exit: (e: DaemonExit) => void = () => {};
    const vm: WatchedVm = {
      name: 'build',
      consoleLogPath,
      consoleTail: (lines) => readConsoleTail(consoleLogPath, lines),
      exited: new Promise((resolve) => {
        exit = resolve;
      }),
    };
    setTimeout(() => exit({ exitCode: 0, signal: null }), 300);
    const error = await waitForSsh(t, { vm, timeoutMs: 30_000, intervalMs: 100 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(VmExitedError);
    expect((error as VmExitedError).consoleTail).toContain('not a bootable disk');
    expect((error as VmExitedError).message).toContain(consoleLogPath);
  });
});
