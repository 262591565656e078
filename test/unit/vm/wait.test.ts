import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CancelledError, KibError, TimeoutError, VmExitedError } from '../../../src/core/errors.js';
import type { DaemonExit } from '../../../src/process/index.js';
import { readConsoleTail, waitForReady, type WatchedVm } from '../../../src/vm/index.js';
import { tempDir } from '../process/helpers.js';

function fakeVm(consoleText: string): WatchedVm & { exit: (exit: DaemonExit) => void } {
  const consoleLogPath = join(tempDir('wait'), 'console.log');
  writeFileSync(consoleLogPath, consoleText);
  let exit: (exit: DaemonExit) => void = () => {};
  const exited = new Promise<DaemonExit>((resolve) => {
    exit = resolve;
  });
  return { name: 'test-vm', exited, consoleLogPath, consoleTail: (lines) => readConsoleTail(consoleLogPath, lines), exit: (e) => exit(e) };
}

describe('waitForReady', () => {
  it('polls until the probe has a value', async () => {
    let calls = 0;
    const value = await waitForReady({
      what: 'readiness',
      vm: fakeVm(''),
      timeoutMs: 5_000,
      intervalMs: 20,
      probe: async () => (++calls >= 3 ? 'ready' : undefined),
    });
    expect(value).toBe('ready');
    expect(calls).toBe(3);
  });

  it('fails at once with the console tail when the VM exits while waiting', async () => {
    const vm = fakeVm('SeaBIOS\nBooting from Hard Disk...\nKernel panic - not syncing: VFS: Unable to mount root fs\n');
    const started = Date.now();
    setTimeout(() => vm.exit({ exitCode: 1, signal: null }), 100);
    const error = await waitForReady({ what: 'SSH', vm, timeoutMs: 10_000, intervalMs: 20, probe: async () => undefined }).catch(
      (e: unknown) => e,
    );
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(error).toBeInstanceOf(VmExitedError);
    const exited = error as VmExitedError;
    expect(exited.consoleLogPath).toBe(vm.consoleLogPath);
    expect(exited.consoleTail).toContain('Kernel panic');
    expect(exited.message).toContain('VM test-vm exited with code 1 while waiting for SSH');
    expect(exited.message).toContain(vm.consoleLogPath);
  });

  it('on its deadline throws TimeoutError naming the console log and quoting its end', async () => {
    const vm = fakeVm('\x1b[2J\x1b[1;1HGRUB loading.\r\nWelcome to GRUB!\r\n');
    const error = await waitForReady({ what: 'SSH login', vm, timeoutMs: 200, intervalMs: 20, probe: async () => undefined }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TimeoutError);
    expect((error as TimeoutError).message).toBe('SSH login did not happen within 0 s');
    expect((error as TimeoutError).hint).toContain(vm.consoleLogPath);
    expect((error as TimeoutError).hint).toContain('GRUB loading.\nWelcome to GRUB!');
  });

  it('ends with CancelledError when the signal fires, and stops the running probe', async () => {
    const controller = new AbortController();
    let probeSignal: AbortSignal | undefined;
    setTimeout(() => controller.abort(), 100);
    const error = await waitForReady({
      what: 'SSH',
      vm: fakeVm(''),
      timeoutMs: 10_000,
      signal: controller.signal,
      probe: (signal) => {
        probeSignal = signal;
        return new Promise(() => {});
      },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CancelledError);
    expect(probeSignal?.aborted).toBe(true);
  });

  it('passes on an error thrown by the probe', async () => {
    const error = await waitForReady({
      what: 'cloud-init',
      vm: undefined,
      timeoutMs: 5_000,
      probe: async () => {
        throw new KibError('CLOUD_INIT_FAILED', 'cloud-init reported an error');
      },
    }).catch((e: unknown) => e);
    expect((error as KibError).code).toBe('CLOUD_INIT_FAILED');
  });
});
