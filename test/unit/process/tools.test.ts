import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MissingToolError } from '../../../src/core/errors.js';
import { checkTools, findTool } from '../../../src/process/index.js';
import { tempDir } from './helpers.js';

describe('findTool', () => {
  it('finds an executable on the search path and ignores non-executable files', () => {
    const dir = tempDir('tools');
    writeFileSync(join(dir, 'kib-tool'), '#!/bin/sh\n');
    writeFileSync(join(dir, 'kib-data'), 'not a program');
    chmodSync(join(dir, 'kib-tool'), 0o755);
    expect(findTool('kib-tool', `/nonexistent:${dir}`)).toBe(join(dir, 'kib-tool'));
    expect(findTool('kib-data', dir)).toBeUndefined();
    expect(findTool('kib-missing', dir)).toBeUndefined();
    expect(findTool(join(dir, 'kib-tool'), '')).toBe(join(dir, 'kib-tool'));
  });

  it('finds the real host tools the VM layer needs', () => {
    expect(findTool('qemu-img')).toMatch(/\/qemu-img$/);
  });
});

describe('checkTools', () => {
  it('reports every missing tool at once, with its purpose and package', () => {
    const needs = [
      { command: 'sh', purpose: 'run scripts', packageName: 'dash' },
      { command: 'kib-missing-a', purpose: 'export qcow2', packageName: 'pkg-a' },
      { command: 'kib-missing-b', purpose: 'build the seed ISO', packageName: 'pkg-b' },
      { command: 'kib-missing-a', purpose: 'export raw', packageName: 'pkg-a' },
    ];
    let error: unknown;
    try {
      checkTools(needs);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(MissingToolError);
    const missing = error as MissingToolError;
    expect(missing.tools.map((t) => t.command)).toEqual(['kib-missing-a', 'kib-missing-b']);
    expect(missing.message).toContain("Could not find 'kib-missing-a', needed to export qcow2 — install pkg-a");
    expect(missing.message).toContain("Could not find 'kib-missing-b', needed to build the seed ISO — install pkg-b");
    expect(missing.hint).toContain('pkg-a pkg-b');
  });

  it('returns the resolved paths when everything is there', () => {
    const found = checkTools([{ command: 'sh', purpose: 'run scripts', packageName: 'dash' }]);
    expect(found.get('sh')).toMatch(/\/sh$/);
  });
});
