import type { Reporter, TestModule } from 'vitest/node';

/**
 * Prints one plain closing line, `Tests: N passed, N failed, N skipped` (and files that failed
 * outside any test, e.g. a syntax error), after vitest's own
 * summary, and the reason of every skipped test, so a reader of the CI log sees what did not run
 * and why.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    const skippedNotes: string[] = [];
    // A file that fails to load or whose hooks fail has no failed test of its own; count it.
    const brokenFiles: string[] = [];
    for (const module of testModules) {
      if (module.state() === 'failed' || module.errors().length > 0) {
        if (![...module.children.allTests()].some((test) => test.result().state === 'failed')) brokenFiles.push(module.moduleId);
      }
      for (const test of module.children.allTests()) {
        const result = test.result();
        if (result.state === 'passed') passed += 1;
        else if (result.state === 'failed') failed += 1;
        else if (result.state === 'skipped') {
          skipped += 1;
          const note = result.note ?? test.options.mode;
          skippedNotes.push(`  skipped: ${test.fullName}${note === undefined || note === 'skip' ? '' : ` — ${note}`}`);
        }
      }
    }
    if (skippedNotes.length > 0) process.stdout.write(`\nSkipped tests:\n${skippedNotes.join('\n')}\n`);
    if (brokenFiles.length > 0) process.stdout.write(`\nFiles that failed outside any test:\n${brokenFiles.map((f) => `  ${f}`).join('\n')}\n`);
    process.stdout.write(`\nTests: ${passed} passed, ${failed} failed, ${skipped} skipped${brokenFiles.length > 0 ? `, ${brokenFiles.length} file(s) failed to run` : ''}\n`);
  }
}
