import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CancelledError, VmExitedError } from '../../../src/core/errors.js';
import { startVm, type StartVmSpec } from '../../../src/vm/index.js';
import { tempDir } from '../process/helpers.js';

// Starting a VM that boots is in test/vm/vm-lifecycle.test.ts; these fail before any guest runs.

function spec(stateDir: string, overrides: Partial<StartVmSpec> = {}): StartVmSpec {
  return {
    name: 'broken',
    diskPath: join(stateDir, 'no-such-disk.qcow2'),
    diskFormat: 'qcow2',
    cpus: 1,
    memoryMiB: 128,
    accelerator: 'tcg',
    firmware: 'bios',
    network: 'restricted',
    stateDir,
    ...overrides,
  };
}

describe('startVm failures', () => {
  it("reports QEMU's own error when it cannot start, and removes the run dir", async () => {
    const state = tempDir('start-broken');
    const error = await startVm(spec(state)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(VmExitedError);
    expect((error as VmExitedError).message).toContain('QEMU for broken exited at start');
    expect((error as VmExitedError).message).toContain('no-such-disk.qcow2');
    expect(readdirSync(join(state, 'runs'))).toEqual([]);
  });

  it('does nothing when cancelled before it starts', async () => {
    const state = tempDir('start-cancelled');
    const controller = new AbortController();
    controller.abort();
    await expect(startVm(spec(state), { signal: controller.signal })).rejects.toBeInstanceOf(CancelledError);
    expect(existsSync(join(state, 'runs'))).toBe(false);
  });
});
