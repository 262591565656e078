import { throwIfAborted } from '../core/errors.js';
import { silentReporter, type Reporter } from '../report/events.js';
import type { CheckGroup, CheckOf, CheckResult, CheckStatus } from './check.js';
import type { ExpectedImage } from './expected.js';

export interface RunChecksOptions {
  reporter?: Reporter;
  /** Checked between checks: a cancel stops before the next one and throws CancelledError. */
  signal?: AbortSignal;
}

/**
 * Runs checks one after another (they share one SSH connection and one agent channel, and a
 * guest under TCG answers faster to one caller at a time). A check that throws fails with the
 * error's message; it never stops the others. Emits one `check` event per result.
 */
export async function runChecks<C extends { expected: ExpectedImage }>(
  checks: readonly CheckOf<C>[],
  ctx: C,
  options: RunChecksOptions = {},
): Promise<CheckResult[]> {
  const reporter = options.reporter ?? silentReporter;
  const results: CheckResult[] = [];
  for (const check of checks) {
    throwIfAborted(options.signal, 'Verification');
    const started = performance.now();
    let status: CheckStatus;
    let detail: string;
    const reason = check.appliesTo?.(ctx.expected);
    if (reason !== undefined) {
      status = 'skip';
      detail = reason;
    } else {
      try {
        const outcome = await check.run(ctx);
        if ('skip' in outcome) {
          status = 'skip';
          detail = outcome.skip;
        } else {
          status = outcome.ok ? 'pass' : 'fail';
          detail = outcome.detail;
        }
      } catch (error) {
        // A cancel during a check is not the image's fault: stop, don't record a failure.
        throwIfAborted(options.signal, 'Verification');
        status = 'fail';
        detail = `check could not run: ${error instanceof Error ? error.message : String(error)}`;
      }
    }
    const result: CheckResult = {
      id: check.id,
      title: check.title,
      group: check.group,
      status,
      detail,
      durationMs: Math.round(performance.now() - started),
    };
    results.push(result);
    reporter.emit({ type: 'check', name: result.id, status: result.status, detail: result.detail });
  }
  return results;
}

export interface CheckSummary {
  total: number;
  pass: number;
  fail: number;
  skip: number;
  byGroup: Partial<Record<CheckGroup, { pass: number; fail: number; skip: number }>>;
}

export function summarize(results: readonly CheckResult[]): CheckSummary {
  const summary: CheckSummary = { total: results.length, pass: 0, fail: 0, skip: 0, byGroup: {} };
  for (const result of results) {
    summary[result.status] += 1;
    const group = (summary.byGroup[result.group] ??= { pass: 0, fail: 0, skip: 0 });
    group[result.status] += 1;
  }
  return summary;
}

export function hasFailures(results: readonly CheckResult[]): boolean {
  return results.some((result) => result.status === 'fail');
}

const LABELS: Record<CheckStatus, string> = { pass: 'PASS', fail: 'FAIL', skip: 'SKIP' };

/**
 * One line per check, ids aligned, then a count line:
 * `PASS  services/containerd  containerd: active (running), enabled`
 * `SKIP  kernel/selinux-mode  (does not apply to the debian family)`
 */
export function renderCheckLines(results: readonly CheckResult[]): string {
  const width = Math.max(0, ...results.map((result) => result.id.length));
  const lines = results.map((result) => {
    const detail = result.status === 'skip' ? `(${result.detail})` : result.detail;
    return `${LABELS[result.status]}  ${result.id.padEnd(width)}  ${detail}`.trimEnd();
  });
  const summary = summarize(results);
  lines.push(`${summary.pass} passed, ${summary.fail} failed, ${summary.skip} skipped`);
  return `${lines.join('\n')}\n`;
}

/** Stable JSON for `--json`: the summary, then every result in list order. */
export function renderCheckJson(results: readonly CheckResult[]): string {
  const summary = summarize(results);
  return `${JSON.stringify(
    {
      ok: !hasFailures(results),
      summary: { total: summary.total, pass: summary.pass, fail: summary.fail, skip: summary.skip },
      results: results.map((r) => ({ id: r.id, group: r.group, title: r.title, status: r.status, detail: r.detail, durationMs: r.durationMs })),
    },
    null,
    2,
  )}\n`;
}
