import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { spawnDaemon, type StartedDaemon } from '../../../src/process/index.js';
import { QmpClient, QmpError, type QmpEvent } from '../../../src/vm/index.js';
import { tempDir } from '../process/helpers.js';

// A real QEMU without a machine: it starts in milliseconds, runs no guest, and speaks QMP.
function startBareQemu(socket: string): StartedDaemon {
  return spawnDaemon('qemu-system-x86_64', ['-machine', 'none', '-nodefaults', '-display', 'none', '-qmp', `unix:${socket},server=on,wait=off`]);
}

const daemons: StartedDaemon[] = [];
afterEach(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.stop({ termMs: 1_000 })));
});

describe('QmpClient', () => {
  it('negotiates capabilities, runs commands by id and reports QMP errors with their class', async () => {
    const socket = join(tempDir('qmp'), 'qmp.sock');
    const qemu = startBareQemu(socket);
    daemons.push(qemu);
    const qmp = await QmpClient.connect(socket, { timeoutMs: 10_000 });
    const [version, status] = await Promise.all([
      qmp.execute<{ qemu: { major: number } }>('query-version'),
      qmp.execute<{ status: string }>('query-status'),
    ]);
    expect(version.qemu.major).toBeGreaterThanOrEqual(7);
    expect(typeof status.status).toBe('string');

    const error = await qmp.execute('no-such-command').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(QmpError);
    expect((error as QmpError).errorClass).toBe('CommandNotFound');
    expect((error as QmpError).message).toContain('no-such-command');
    qmp.close();
  });

  it('delivers events and sees the connection close when QEMU quits', async () => {
    const socket = join(tempDir('qmp-events'), 'qmp.sock');
    const qemu = startBareQemu(socket);
    daemons.push(qemu);
    const qmp = await QmpClient.connect(socket);
    const events: QmpEvent[] = [];
    qmp.onEvent((event) => events.push(event));
    await qmp.execute('stop');
    await qmp.execute('cont');
    expect(events.map((e) => e.event)).toContain('STOP');
    await qmp.execute('quit').catch(() => {});
    await qmp.closed;
    expect(qmp.isClosed).toBe(true);
    expect(await qemu.exited).toEqual({ exitCode: 0, signal: null });
    await expect(qmp.execute('query-status')).rejects.toMatchObject({ code: 'QMP_CLOSED' });
  });

  it('gives up connecting when no QEMU ever creates the socket', async () => {
    const socket = join(tempDir('qmp-none'), 'qmp.sock');
    const started = Date.now();
    await expect(QmpClient.connect(socket, { timeoutMs: 300 })).rejects.toMatchObject({ code: 'SOCKET_CONNECT' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
  });
});
