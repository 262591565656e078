import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll } from 'vitest';
import { isProcessRunning } from '../../../src/process/index.js';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '../../..');
export const programsDir = join(repoRoot, 'test/fixtures/programs');

export function program(name: string): string {
  return join(programsDir, name);
}

/** Polls until the process is gone (zombies count as gone); false if it is still there at the deadline. */
export async function waitUntilGone(pid: number, timeoutMs = 3_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isProcessRunning(pid)) return true;
    await sleep(25);
  }
  return !isProcessRunning(pid);
}

/** Polls a file until `pattern` matches its content; returns the first capture group. */
export async function waitForMatch(path: string, pattern: RegExp, timeoutMs = 5_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    let text = '';
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      // not written yet
    }
    const match = pattern.exec(text);
    if (match !== null) return match[1] ?? match[0];
    await sleep(25);
  }
  throw new Error(`${path} did not match ${String(pattern)} within ${timeoutMs} ms`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
}

const created: string[] = [];
// Imported at the top of a test file, this registers on that file's root suite.
afterAll(() => {
  for (const dir of created.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A fresh temp dir, removed after the importing test file has run. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `kib-${prefix}-`));
  created.push(dir);
  return dir;
}

/**
 * Compiles src/process and src/core (and more folders when asked) to plain JavaScript in a temp
 * dir, so that a separate Node process (which cannot load TypeScript) can use the real modules in
 * exit-hook and orphan tests.
 */
export function compileProcessModule(extraFolders: readonly string[] = []): string {
  const out = tempDir('process-js');
  for (const folder of ['src/process', 'src/core', ...extraFolders]) {
    for (const file of readdirSync(join(repoRoot, folder))) {
      if (!file.endsWith('.ts')) continue;
      const source = readFileSync(join(repoRoot, folder, file), 'utf8');
      const { outputText } = ts.transpileModule(source, {
        compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: false },
      });
      const target = join(out, relative('src', folder), file.replace(/\.ts$/, '.js'));
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, outputText);
    }
  }
  return out;
}
