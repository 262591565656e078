import { describe, expect, it } from 'vitest';
import { findTool, run } from '../../../src/process/index.js';
import { processesMentioning, REPO_ROOT } from '../../support/kib-cli.js';

/**
 * The serve benchmark itself, small: `npm run bench:serve` starts kib serve and nginx side by side,
 * checks both return the file byte for byte, prints the figures and the ratio, and stops both.
 * No speed is asserted here (the machines are noisy); the full run's output is in bench/results/.
 */
const nginxMissing = findTool('nginx') === undefined;

describe.skipIf(nginxMissing)(`npm run bench:serve${nginxMissing ? ' (skipped: nginx is not installed; scripts/packages.txt lists nginx-light)' : ''}`, () => {
  it('serves the same file from kib serve and nginx, prints both throughputs and their ratio, and stops both servers', async () => {
    const result = await run('npm', ['run', '--silent', 'bench:serve', '--', '--size-mib', '16', '--rounds', '1', '--concurrency', '1,2', '--client', 'node'], {
      cwd: REPO_ROOT,
      timeoutMs: 180_000,
      allowFailure: true,
    });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toContain('content check: both servers returned the file with the expected sha256');
    const ratios = [...result.stdout.matchAll(/^node client, (\d+) connection\(s\): kib (\d+) MiB\/s, nginx (\d+) MiB\/s, ratio kib\/nginx (\d+\.\d+)$/gm)];
    expect(ratios.map((m) => Number(m[1]))).toEqual([1, 2]);
    for (const match of ratios) {
      expect(Number(match[2])).toBeGreaterThan(0);
      expect(Number(match[3])).toBeGreaterThan(0);
      expect(Number(match[4])).toBeGreaterThan(0);
    }
    // Both servers ran from the benchmark's temporary directory; nothing of it is left running.
    expect(await processesMentioning('kib-serve-bench-')).toEqual([]);
  }, 240_000);
});
