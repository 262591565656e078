import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CancelledError, CommandError } from '../../../src/core/errors.js';
import { run } from '../../../src/process/index.js';
import { program, tempDir, waitUntilGone } from './helpers.js';

const node = process.execPath;

describe('run', () => {
  it('captures both streams and the exit code of a successful command', async () => {
    const result = await run(node, [program('exit-with.js'), '0']);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe('out: exiting with 0\n');
    expect(result.stderr).toContain('err line 1\n');
    expect(result.stderr).toContain('err line 40\n');
    expect(result.durationMs).toBeGreaterThan(0);
  });

  it('throws CommandError with the command, exit code and the tail of stderr on a non-zero exit', async () => {
    const error = await run(node, [program('exit-with.js'), '3']).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CommandError);
    const commandError = error as CommandError;
    expect(commandError.code).toBe('COMMAND_FAILED');
    expect(commandError.reason).toBe('exit');
    expect(commandError.exitCode).toBe(3);
    expect(commandError.signal).toBeNull();
    expect(commandError.command).toEqual([node, program('exit-with.js'), '3']);
    // The tail keeps the last 30 lines only.
    expect(commandError.stderrTail.split('\n')).toHaveLength(30);
    expect(commandError.stderrTail).toContain('err line 40');
    expect(commandError.stderrTail).not.toContain('err line 10\n');
    expect(commandError.message).toContain('exited with code 3');
    expect(commandError.message).toContain('err line 40');
  });

  it('returns the exit code instead of throwing when failure is allowed', async () => {
    const result = await run(node, [program('exit-with.js'), '7'], { allowFailure: true });
    expect(result.exitCode).toBe(7);
    expect(result.stdout).toContain('exiting with 7');
  });

  it('reports a command that cannot be started as a spawn failure with a hint', async () => {
    const error = await run('kib-no-such-program', ['x']).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CommandError);
    expect((error as CommandError).reason).toBe('spawn');
    expect((error as CommandError).exitCode).toBeNull();
    expect((error as CommandError).hint).toContain("'kib-no-such-program' is not installed");
  });

  it('gives the child a minimal environment plus explicit additions', async () => {
    process.env.KIB_TEST_LEAK = 'leaked';
    try {
      const result = await run(node, [program('exit-with.js'), '0', '--print-env', 'PATH', 'LANG', 'KIB_TEST_LEAK', 'EXTRA'], {
        env: { EXTRA: 'given' },
      });
      expect(result.stdout).toContain(`PATH=${process.env.PATH ?? ''}\n`);
      expect(result.stdout).toContain('LANG=C.UTF-8\n');
      expect(result.stdout).toContain('KIB_TEST_LEAK=<unset>\n');
      expect(result.stdout).toContain('EXTRA=given\n');
    } finally {
      delete process.env.KIB_TEST_LEAK;
    }
  });

  it('feeds input to stdin only when asked', async () => {
    const result = await run(node, [program('exit-with.js'), '0', '--echo-stdin'], { input: 'hello\nworld' });
    expect(result.stdout).toContain('stdin: hello\nworld\n');
    // Without input, stdin is /dev/null: the program sees end-of-file at once instead of hanging.
    const empty = await run(node, [program('exit-with.js'), '0', '--echo-stdin'], { timeoutMs: 10_000 });
    expect(empty.stdout).toContain('stdin: \n');
  });

  it('holds stdin open until a promised input resolves, so the child can wait for a signal', async () => {
    const lines: string[] = [];
    let answer!: (text: string) => void;
    const go = new Promise<string>((resolve) => {
      answer = resolve;
    });
    const running = run('sh', ['-c', 'echo waiting; read reply; echo "got $reply"'], {
      input: go,
      onLine: (_stream, line) => {
        lines.push(line);
        if (line === 'waiting') setTimeout(() => answer('go\n'), 50);
      },
    });
    const result = await running;
    expect(result.stdout).toBe('waiting\ngot go\n');
    expect(lines).toEqual(['waiting', 'got go']);
  });

  it('streams lines as they arrive, from both streams, including a last line without newline', async () => {
    const seen: { stream: string; line: string; at: number }[] = [];
    const started = Date.now();
    const result = await run(node, [program('slow-lines.js'), '6', '150'], {
      onLine: (stream, line) => seen.push({ stream, line, at: Date.now() - started }),
    });
    expect(seen.map((s) => `${s.stream}:${s.line}`)).toEqual([
      'stdout:line 0',
      'stderr:line 1',
      'stdout:line 2',
      'stderr:line 3',
      'stdout:line 4',
      'stderr:line 5',
    ]);
    // Delivered while the program ran, not all at the end.
    const first = seen[0]?.at ?? 0;
    const last = seen[5]?.at ?? 0;
    expect(last - first).toBeGreaterThanOrEqual(500);
    expect(result.stdout).toBe('line 0\nline 2\nline 4\n');
  });

  it('appends both streams to the log file after a command header', async () => {
    const dir = tempDir('run-log');
    const logFile = join(dir, 'tool.log');
    await run(node, [program('exit-with.js'), '0'], { logFile });
    await run(node, [program('exit-with.js'), '5'], { logFile, allowFailure: true });
    const log = readFileSync(logFile, 'utf8');
    expect(log).toContain(`$ ${node} ${program('exit-with.js')} 0\n`);
    expect(log).toContain(`$ ${node} ${program('exit-with.js')} 5\n`);
    expect(log).toContain('out: exiting with 0\n');
    expect(log).toContain('out: exiting with 5\n');
    expect(log.match(/err line 40\n/g)).toHaveLength(2);
  });

  it('on timeout escalates from SIGTERM to SIGKILL for a child that ignores SIGTERM', async () => {
    const started = Date.now();
    const error = await run(node, [program('ignore-sigterm.js')], { timeoutMs: 500, killGraceMs: 400 }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CommandError);
    expect((error as CommandError).reason).toBe('timeout');
    expect((error as CommandError).signal).toBe('SIGKILL');
    expect((error as CommandError).message).toContain('timed out');
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
  });

  it('on cancel throws CancelledError and stops the child together with its grandchildren', async () => {
    const controller = new AbortController();
    let grandchildPid: number | undefined;
    const pending = run(node, [program('spawn-grandchild.js')], {
      signal: controller.signal,
      killGraceMs: 500,
      onLine: (_stream, line) => {
        const match = /^grandchild (\d+)$/.exec(line);
        if (match?.[1] !== undefined) {
          grandchildPid = Number(match[1]);
          controller.abort();
        }
      },
    });
    const error = await pending.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CancelledError);
    expect(grandchildPid).toBeDefined();
    expect(await waitUntilGone(grandchildPid ?? 0)).toBe(true);
  });

  it('does not start anything when the signal has already fired', async () => {
    const controller = new AbortController();
    controller.abort();
    const dir = tempDir('run-aborted');
    const logFile = join(dir, 'never.log');
    await expect(run(node, [program('exit-with.js'), '0'], { signal: controller.signal, logFile })).rejects.toBeInstanceOf(
      CancelledError,
    );
    expect(() => readFileSync(logFile)).toThrow();
  });
});
