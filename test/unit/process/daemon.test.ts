import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { CommandError } from '../../../src/core/errors.js';
import { isProcessRunning, killAllDaemonsSync, liveProcessGroups, run, spawnDaemon } from '../../../src/process/index.js';
import { compileProcessModule, program, tempDir, waitForMatch, waitUntilGone } from './helpers.js';

const node = process.execPath;

describe('spawnDaemon', () => {
  it('runs in its own process group with output in files and stops with SIGTERM', async () => {
    const dir = tempDir('daemon');
    const stdoutFile = join(dir, 'out.log');
    const pidFile = join(dir, 'daemon.pid');
    const daemon = spawnDaemon(node, [program('slow-lines.js'), '1000', '50'], {
      stdoutFile,
      stderrFile: join(dir, 'err.log'),
      pidFile,
    });
    expect(readFileSync(pidFile, 'utf8')).toBe(`${daemon.pid}\n`);
    await waitForMatch(stdoutFile, /line 2\n/);
    await waitForMatch(join(dir, 'err.log'), /line 3\n/);
    // Its own group: the group id is its pid, not ours.
    const stat = readFileSync(`/proc/${daemon.pid}/stat`, 'utf8');
    const pgid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
    expect(pgid).toBe(daemon.pid);
    expect(daemon.isRunning()).toBe(true);

    const exit = await daemon.stop({ termMs: 2_000 });
    expect(exit).toEqual({ exitCode: null, signal: 'SIGTERM' });
    expect(daemon.isRunning()).toBe(false);
    expect(await waitUntilGone(daemon.pid)).toBe(true);
  });

  it('escalates to SIGKILL when SIGTERM is ignored', async () => {
    const dir = tempDir('daemon-kill');
    const stdoutFile = join(dir, 'out.log');
    const daemon = spawnDaemon(node, [program('ignore-sigterm.js')], { stdoutFile });
    await waitForMatch(stdoutFile, /ready/);
    const started = Date.now();
    const exit = await daemon.stop({ termMs: 400 });
    expect(exit.signal).toBe('SIGKILL');
    expect(Date.now() - started).toBeGreaterThanOrEqual(400);
    expect(readFileSync(stdoutFile, 'utf8')).toContain('got SIGTERM, ignoring');
  });

  it('tries the graceful step first and sends no signal when it works', async () => {
    const dir = tempDir('daemon-graceful');
    const stdoutFile = join(dir, 'out.log');
    const daemon = spawnDaemon(node, [program('ignore-sigterm.js')], { stdoutFile });
    await waitForMatch(stdoutFile, /ready/);
    let gracefulCalls = 0;
    const exit = await daemon.stop({
      graceful: async () => {
        gracefulCalls += 1;
        // Stands in for a QMP power-down: the daemon ends itself (SIGINT is not ignored).
        process.kill(daemon.pid, 'SIGINT');
      },
      graceMs: 5_000,
      termMs: 200,
    });
    expect(gracefulCalls).toBe(1);
    expect(exit.signal).toBe('SIGINT');
    expect(readFileSync(stdoutFile, 'utf8')).not.toContain('got SIGTERM');
  });

  it('moves on to signals when the graceful step fails or does nothing', async () => {
    const dir = tempDir('daemon-graceful-fails');
    const stdoutFile = join(dir, 'out.log');
    const daemon = spawnDaemon(node, [program('ignore-sigterm.js')], { stdoutFile });
    await waitForMatch(stdoutFile, /ready/);
    const exit = await daemon.stop({
      graceful: () => Promise.reject(new Error('no agent')),
      graceMs: 300,
      termMs: 300,
    });
    expect(exit.signal).toBe('SIGKILL');
  });

  it('is idempotent: concurrent and repeated stops share one ladder', async () => {
    const dir = tempDir('daemon-idem');
    const stdoutFile = join(dir, 'out.log');
    const daemon = spawnDaemon(node, [program('ignore-sigterm.js')], { stdoutFile });
    await waitForMatch(stdoutFile, /ready/);
    let gracefulCalls = 0;
    const graceful = async (): Promise<void> => {
      gracefulCalls += 1;
    };
    const [a, b] = await Promise.all([
      daemon.stop({ graceful, graceMs: 200, termMs: 200 }),
      daemon.stop({ graceful, graceMs: 200, termMs: 200 }),
    ]);
    expect(a).toEqual(b);
    expect(gracefulCalls).toBe(1);
    expect(await daemon.stop()).toEqual(a);
    expect(readFileSync(stdoutFile, 'utf8').match(/got SIGTERM/g)).toHaveLength(1);
  });

  it('leaves no grandchild behind after stop, even one that ignores SIGTERM', async () => {
    const dir = tempDir('daemon-grandchild');
    const stdoutFile = join(dir, 'out.log');
    const daemon = spawnDaemon(node, [program('spawn-grandchild.js')], { stdoutFile });
    const grandchild = Number(await waitForMatch(stdoutFile, /grandchild (\d+)/));
    expect(isProcessRunning(grandchild)).toBe(true);
    const exit = await daemon.stop({ termMs: 2_000 });
    // The parent dies of SIGTERM; the grandchild ignores it and must be SIGKILLed with the group.
    expect(exit.signal).toBe('SIGTERM');
    expect(await waitUntilGone(grandchild)).toBe(true);
  });

  it('is stopped by `await using` at the end of the scope', async () => {
    const dir = tempDir('daemon-using');
    const stdoutFile = join(dir, 'out.log');
    let pid = 0;
    {
      await using daemon = spawnDaemon(node, [program('slow-lines.js'), '1000', '50'], { stdoutFile });
      pid = daemon.pid;
      await waitForMatch(stdoutFile, /line 0/);
    }
    expect(isProcessRunning(pid)).toBe(false);
    expect(liveProcessGroups()).not.toContain(pid);
  });

  it('resolves `exited` when the daemon ends on its own', async () => {
    const daemon = spawnDaemon(node, [program('exit-with.js'), '4']);
    expect(await daemon.exited).toEqual({ exitCode: 4, signal: null });
    expect(daemon.isRunning()).toBe(false);
    expect(liveProcessGroups()).not.toContain(daemon.pid);
  });

  it('throws a spawn CommandError for a program that does not exist', () => {
    expect(() => spawnDaemon('kib-no-such-daemon', [])).toThrow(CommandError);
    try {
      spawnDaemon('kib-no-such-daemon', []);
    } catch (error) {
      expect((error as CommandError).reason).toBe('spawn');
      expect((error as CommandError).hint).toContain('not installed');
    }
  });

  it('killAllDaemonsSync kills every live group at once', async () => {
    const dir = tempDir('daemon-killall');
    const first = spawnDaemon(node, [program('ignore-sigterm.js')], { stdoutFile: join(dir, 'a.log') });
    const second = spawnDaemon(node, [program('spawn-grandchild.js')], { stdoutFile: join(dir, 'b.log') });
    await waitForMatch(join(dir, 'a.log'), /ready/);
    const grandchild = Number(await waitForMatch(join(dir, 'b.log'), /grandchild (\d+)/));
    expect(killAllDaemonsSync()).toBeGreaterThanOrEqual(2);
    expect((await first.exited).signal).toBe('SIGKILL');
    expect((await second.exited).signal).toBe('SIGKILL');
    expect(await waitUntilGone(grandchild)).toBe(true);
  });
});

describe('exit hook', () => {
  let compiled = '';
  beforeAll(() => {
    compiled = compileProcessModule();
  });

  for (const how of ['finishes normally', 'calls process.exit'] as const) {
    it(`kills a running daemon when the Node process that started it ${how}`, async () => {
      const result = await run(
        node,
        [program('start-daemon-and-exit.js'), compiled, program('ignore-sigterm.js'), ...(how === 'calls process.exit' ? ['--hard-exit'] : [])],
        { allowFailure: true, timeoutMs: 20_000 },
      );
      expect(result.exitCode).toBe(how === 'calls process.exit' ? 3 : 0);
      const pid = Number(/daemon (\d+)/.exec(result.stdout)?.[1]);
      expect(pid).toBeGreaterThan(0);
      expect(await waitUntilGone(pid, 2_000)).toBe(true);
    });
  }
});
