import { describe, expect, it } from 'vitest';
import { CancelledError } from '../../../src/core/errors.js';
import type { KibEvent } from '../../../src/report/events.js';
import { asRoot, commandCheck, shellQuote, type Check, type CheckContext, type CheckResult } from '../../../src/verify/check.js';
import type { ExpectedImage } from '../../../src/verify/expected.js';
import { hasFailures, renderCheckJson, renderCheckLines, runChecks, summarize } from '../../../src/verify/runner.js';

const expected: ExpectedImage = {
  osFamily: 'debian',
  kubernetesVersion: '1.36.1',
  kubernetesInstalled: false,
  kubernetesSkippedReason: 'offline',
  selinux: 'permissive',
  firewall: true,
};

function ctxAnswering(answers: Record<string, { exitCode: number; stdout: string; stderr?: string } | Error>): CheckContext {
  return {
    expected,
    async ssh(command) {
      const answer = answers[command];
      if (answer === undefined) throw new Error(`unexpected command ${command}`);
      if (answer instanceof Error) throw answer;
      return { exitCode: answer.exitCode, stdout: answer.stdout, stderr: answer.stderr ?? '' };
    },
    async agent() {
      throw new Error('no agent');
    },
  };
}

const checks: Check[] = [
  commandCheck({ id: 'services/a', title: 'a', command: 'a', expect: { equals: 'yes' } }),
  commandCheck({ id: 'kernel/b', title: 'b', command: 'b', expect: { stdout: /^ok/ } }),
  commandCheck({ id: 'kubernetes/c', title: 'c', command: 'c', appliesTo: (e) => (e.kubernetesInstalled ? undefined : `not installed: ${String(e.kubernetesSkippedReason)}`) }),
  commandCheck({ id: 'network/d', title: 'd', command: 'd' }),
];

describe('runChecks', () => {
  it('turns outcomes into pass/fail/skip, a thrown error into a fail, and emits one event per check', async () => {
    const events: KibEvent[] = [];
    const results = await runChecks(
      checks,
      ctxAnswering({ a: { exitCode: 0, stdout: 'yes\n' }, b: { exitCode: 0, stdout: 'nope\n' }, d: new Error('ssh: connection reset') }),
      { reporter: { emit: (e) => events.push(e) } },
    );
    expect(results.map((r) => [r.id, r.group, r.status, r.detail])).toEqual([
      ['services/a', 'services', 'pass', 'yes'],
      ['kernel/b', 'kernel', 'fail', 'output "nope" does not match /^ok/'],
      ['kubernetes/c', 'kubernetes', 'skip', 'not installed: offline'],
      ['network/d', 'network', 'fail', 'check could not run: ssh: connection reset'],
    ]);
    expect(events).toEqual(results.map((r) => ({ type: 'check', name: r.id, status: r.status, detail: r.detail })));
    for (const r of results) expect(r.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('reports a wrong exit code with the tail of stderr', async () => {
    const [result] = await runChecks([checks[0] as Check], ctxAnswering({ a: { exitCode: 3, stdout: '', stderr: 'line 1\nline 2\nboom\n' } }));
    expect(result?.detail).toBe('exit code 3, expected 0: line 2 | boom');
  });

  it('stops before the next check when cancelled, without recording a failure for it', async () => {
    const controller = new AbortController();
    const cancelling: Check = {
      id: 'services/slow',
      title: 'slow',
      group: 'services',
      async run() {
        controller.abort();
        throw new Error('ssh killed');
      },
    };
    const events: KibEvent[] = [];
    await expect(runChecks([cancelling, checks[0] as Check], ctxAnswering({}), { signal: controller.signal, reporter: { emit: (e) => events.push(e) } })).rejects.toBeInstanceOf(CancelledError);
    expect(events).toEqual([]);
  });
});

describe('rendering', () => {
  const results: CheckResult[] = [
    { id: 'services/containerd', title: 't', group: 'services', status: 'pass', detail: 'containerd: active (running), enabled', durationMs: 12 },
    { id: 'kernel/selinux-mode', title: 't', group: 'kernel', status: 'skip', detail: 'does not apply to the debian family', durationMs: 0 },
    { id: 'kernel/swap-off', title: 't', group: 'kernel', status: 'fail', detail: 'active swap: /dev/vda5', durationMs: 5 },
  ];

  it('prints one aligned line per check and a count line', () => {
    expect(renderCheckLines(results)).toBe(
      'PASS  services/containerd  containerd: active (running), enabled\n' +
        'SKIP  kernel/selinux-mode  (does not apply to the debian family)\n' +
        'FAIL  kernel/swap-off      active swap: /dev/vda5\n' +
        '1 passed, 1 failed, 1 skipped\n',
    );
  });

  it('summarizes by status and group, and knows when anything failed', () => {
    expect(summarize(results)).toEqual({
      total: 3,
      pass: 1,
      fail: 1,
      skip: 1,
      byGroup: { services: { pass: 1, fail: 0, skip: 0 }, kernel: { pass: 0, fail: 1, skip: 1 } },
    });
    expect(hasFailures(results)).toBe(true);
    expect(hasFailures(results.filter((r) => r.status !== 'fail'))).toBe(false);
  });

  it('renders JSON with ok, counts and results in list order', () => {
    const parsed = JSON.parse(renderCheckJson(results)) as { ok: boolean; summary: unknown; results: { id: string; status: string }[] };
    expect(parsed.ok).toBe(false);
    expect(parsed.summary).toEqual({ total: 3, pass: 1, fail: 1, skip: 1 });
    expect(parsed.results.map((r) => `${r.status} ${r.id}`)).toEqual(['pass services/containerd', 'skip kernel/selinux-mode', 'fail kernel/swap-off']);
  });
});

describe('shell quoting', () => {
  it('leaves plain words alone and single-quotes the rest', () => {
    expect(shellQuote('net.ipv4.ip_forward')).toBe('net.ipv4.ip_forward');
    expect(shellQuote("it's")).toBe(`'it'\\''s'`);
    expect(asRoot("stat -fc %T /sys/fs/cgroup; echo 'x'")).toBe(`sudo -n sh -c 'stat -fc %T /sys/fs/cgroup; echo '\\''x'\\'''`);
  });
});
