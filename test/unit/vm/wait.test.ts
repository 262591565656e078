import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CancelledError, KibError, TimeoutError, VmExitedError } from '../../../src/core/errors.js';
import type { DaemonExit } from '../../../src/process/index.js';
import { readConsoleTail, waitForReady, whileVmRuns, type WatchedVm } from '../../../src/vm/index.js';
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

describe('whileVmRuns', () => {
  it("reports the VM's death, not the work's symptom, when QEMU is killed while the work runs, and cancels the work", async () => {
    const vm = fakeVm('[  OK  ] Started ssh.service\n');
    let workSignal: AbortSignal | undefined;
    setTimeout(() => vm.exit({ exitCode: null, signal: 'SIGKILL' }), 50);
    const error = await whileVmRuns(
      vm,
      (signal) => {
        workSignal = signal;
        // Like ansible: fails with UNREACHABLE once its connection drops (here: when cancelled).
        return new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(new Error('UNREACHABLE! => ssh: connection closed'))));
      },
      { what: 'running the playbook' },
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(VmExitedError);
    expect((error as VmExitedError).message).toMatch(/^VM test-vm was killed by SIGKILL while running the playbook; what that caused: UNREACHABLE! => ssh: connection closed/);
    expect((error as VmExitedError).consoleTail).toContain('Started ssh.service');
    expect(workSignal?.aborted).toBe(true);
  });

  it('blames the VM when the work fails first and QEMU exits a moment later', async () => {
    const vm = fakeVm('');
    const error = await whileVmRuns(
      vm,
      async () => {
        setTimeout(() => vm.exit({ exitCode: 1, signal: null }), 100);
        throw new Error('ansible-playbook exited with code 4');
      },
      { what: 'running the playbook', exitGraceMs: 2_000 },
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(VmExitedError);
    expect((error as Error).message).toContain('VM test-vm exited with code 1 while running the playbook; what that caused: ansible-playbook exited with code 4');
  });

  it("passes the work's own failure and result through while the VM lives", async () => {
    const vm = fakeVm('');
    await expect(whileVmRuns(vm, async () => 42, { what: 'x' })).resolves.toBe(42);
    const failure = new KibError('PROVISION_FAILED', 'task failed');
    await expect(whileVmRuns(vm, async () => Promise.reject(failure), { what: 'x', exitGraceMs: 50 })).rejects.toBe(failure);
  });
});
