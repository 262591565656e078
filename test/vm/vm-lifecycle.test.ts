import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KibError, TimeoutError, VmExitedError } from '../../src/core/errors.js';
import { run } from '../../src/process/index.js';
import type { KibEvent, Reporter } from '../../src/report/events.js';
import { copyFromGuest, generateKeyPair, sshExec, waitForCloudInit, waitForSsh, type SshTarget } from '../../src/ssh/index.js';
import { bootGuest, startVm, waitForReady, type StartedGuest, type StartedVm } from '../../src/vm/index.js';
import { qemuProcessesMentioning } from '../support/kib-cli.js';

/**
 * The VM layer against a real guest: boot the Debian 12 test base the way the build does (overlay,
 * NoCloud seed with an ephemeral key), log in, talk to the guest agent, and stop — leaving no QEMU
 * process and no run dir behind.
 */

const BOOT_TIMEOUT_MS = 600_000;

function recordingReporter(): Reporter & { events: KibEvent[] } {
  const events: KibEvent[] = [];
  return { events, emit: (event) => events.push(event) };
}

describe('VM lifecycle', () => {
  let root: string;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'kib-vm-lifecycle-'));
  });

  afterAll(async () => {
    const left = await qemuProcessesMentioning(root, { ignoreZombies: true });
    await rm(root, { recursive: true, force: true });
    expect(left, 'QEMU processes left behind').toEqual([]);
  });

  describe('on the Debian 12 test base', () => {
    let fixture: string;

    beforeAll(async () => {
      // Imported here so that a broken fixture build fails these tests only, not the one below.
      const { ensureDebianFixture } = await import('../support/fixture.js');
      fixture = await ensureDebianFixture();
    });

    async function bootFixture(name: string, firmware: 'bios' | 'uefi', reporter: Reporter): Promise<{ vm: StartedVm; target: SshTarget; bootMs: number; guest: StartedGuest }> {
      const guest = await bootGuest(
        {
          name,
          workDir: join(root, name),
          disk: { kind: 'overlay', basePath: fixture, baseFormat: 'qcow2' },
          seed: { kind: 'nocloud' },
          vm: { cpus: 2, memoryMiB: 1024, accelerator: 'auto', firmware, network: 'restricted', stateDir: join(root, 'state'), stopGraceMs: 60_000 },
          wait: 'ssh',
          bootTimeoutMs: BOOT_TIMEOUT_MS,
        },
        { reporter },
      );
      return { vm: guest.vm, target: guest.requireSsh(), bootMs: guest.bootMs, guest };
    }

    it('boots with SeaBIOS, logs in over SSH, answers the guest agent, and stop() leaves nothing behind', async ({ annotate }) => {
      const reporter = recordingReporter();
      const { vm, target, bootMs } = await bootFixture('lifecycle-bios', 'bios', reporter);
      await annotate(`BIOS boot to SSH: ${(bootMs / 1000).toFixed(1)} s (${vm.accelerator})`);
      let exitedCleanly = false;
      try {
        expect(vm.runDir.startsWith(join(root, 'state', 'runs'))).toBe(true);
        expect(existsSync(join(vm.runDir, 'owner.json'))).toBe(true);
        expect(await qemuProcessesMentioning(vm.runDir, { ignoreZombies: true })).toEqual([vm.pid]);

        const status = await waitForCloudInit(target, { vm, timeoutMs: BOOT_TIMEOUT_MS });
        expect(status).toMatch(/status: (done|degraded done)/);

        const uname = await sshExec(target, ['uname', '-r'], { timeoutMs: 60_000 });
        expect(uname.stdout.trim()).toMatch(/^\d+\.\d+\.\d+-\d+-cloud-amd64$/);
        const whoami = await sshExec(target, 'sudo -n id -un', { timeoutMs: 60_000 });
        expect(whoami.stdout.trim()).toBe('root');
        const script = await sshExec(target, 'sh -s', { input: 'echo "$((6 * 7))"\n', timeoutMs: 60_000 });
        expect(script.stdout).toBe('42\n');
        const copied = join(root, 'os-release');
        await copyFromGuest(target, '/etc/os-release', copied, { timeoutMs: 60_000 });
        expect(await readFile(copied, 'utf8')).toContain('VERSION_CODENAME=bookworm');

        const agent = vm.guestAgent();
        const pong = await waitForReady({
          what: 'the guest agent to answer guest-ping',
          vm,
          timeoutMs: 120_000,
          intervalMs: 1_000,
          probe: () =>
            agent.execute('guest-ping', undefined, { timeoutMs: 5_000 }).catch((error: unknown) => {
              if (error instanceof KibError && error.code === 'GUEST_AGENT_TIMEOUT') return undefined;
              throw error;
            }),
        });
        expect(pong).toEqual({});
        const info = await agent.execute<{ version: string; supported_commands: { name: string; enabled: boolean }[] }>('guest-info');
        expect(info.version).toMatch(/^\d+\.\d+/);
        const commands = info.supported_commands.filter((c) => c.enabled).map((c) => c.name);
        expect(commands).toEqual(expect.arrayContaining(['guest-ping', 'guest-info', 'guest-shutdown', 'guest-get-osinfo']));

        expect(await vm.qmp().execute('query-status')).toMatchObject({ status: 'running' });
      } finally {
        const stopStarted = performance.now();
        await vm.stop();
        await annotate(`stop() took ${((performance.now() - stopStarted) / 1000).toFixed(1)} s`);
        exitedCleanly = (await vm.exited).exitCode === 0;
      }

      // The guest powered itself off (guest-shutdown through the agent): QEMU exits 0, no signal.
      expect(exitedCleanly).toBe(true);
      expect(vm.isRunning()).toBe(false);
      expect(existsSync(vm.runDir)).toBe(false);
      expect(await qemuProcessesMentioning(vm.runDir, { ignoreZombies: true })).toEqual([]);
      const vmLines = reporter.events.flatMap((e) => (e.type === 'log' && e.source === 'vm' ? [e.line] : []));
      expect(vmLines.some((line) => line.startsWith('starting lifecycle-bios'))).toBe(true);
      expect(vmLines.some((line) => line.includes('stopped'))).toBe(true);
    });

    it('boots with UEFI (OVMF) and powers off through the ACPI power button', async ({ annotate }) => {
      const { vm, target, bootMs } = await bootFixture('lifecycle-uefi', 'uefi', recordingReporter());
      await annotate(`UEFI boot to SSH: ${(bootMs / 1000).toFixed(1)} s (${vm.accelerator})`);
      try {
        expect(existsSync(join(vm.runDir, 'OVMF_VARS.fd'))).toBe(true);
        const efi = await sshExec(target, 'test -d /sys/firmware/efi && echo efi', { timeoutMs: 60_000 });
        expect(efi.stdout.trim()).toBe('efi');
        // systemd-logind needs to be up for the power button to count; cloud-init done implies it.
        await waitForCloudInit(target, { vm, timeoutMs: BOOT_TIMEOUT_MS });
        expect(await vm.powerDown({ timeoutMs: 180_000 })).toEqual({ exitCode: 0, signal: null });
      } finally {
        await vm.stop();
      }
      expect(existsSync(vm.runDir)).toBe(false);
      expect(await qemuProcessesMentioning(vm.runDir, { ignoreZombies: true })).toEqual([]);
    });
  });

  // Needs no guest OS: a blank disk never boots, which is exactly what this checks.
  it('fails the SSH wait of an unbootable VM with the console log path, and stop() leaves nothing', async () => {
    const work = join(root, 'blank');
    const diskPath = join(work, 'blank.qcow2');
    await rm(work, { recursive: true, force: true });
    await run('mkdir', ['-p', work]);
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', diskPath, '64M']);
    const keys = await generateKeyPair(join(work, 'ssh'));
    const vm = await startVm({
      name: 'blank',
      diskPath,
      diskFormat: 'qcow2',
      cpus: 1,
      memoryMiB: 256,
      accelerator: 'auto',
      firmware: 'bios',
      network: 'restricted',
      stateDir: join(root, 'state'),
      consoleLogPath: join(work, 'console.log'),
    });
    let error: unknown;
    try {
      expect(await qemuProcessesMentioning(vm.runDir, { ignoreZombies: true })).toEqual([vm.pid]);
      const target: SshTarget = { host: '127.0.0.1', port: vm.sshPort ?? 0, user: 'kib', privateKeyPath: keys.privateKeyPath };
      error = await waitForSsh(target, { vm, timeoutMs: 5_000, intervalMs: 500 }).catch((e: unknown) => e);
    } finally {
      await vm.stop({ graceMs: 1_000 });
    }
    expect(error instanceof TimeoutError || error instanceof VmExitedError, String(error)).toBe(true);
    const text = `${(error as KibError).message}\n${(error as KibError).hint ?? ''}`;
    expect(text).toContain(join(work, 'console.log'));
    expect(vm.isRunning()).toBe(false);
    expect(existsSync(vm.runDir)).toBe(false);
    expect(await qemuProcessesMentioning(vm.runDir, { ignoreZombies: true })).toEqual([]);
    // The console log was put outside the run dir on purpose: it survives for the error to point to.
    expect(existsSync(join(work, 'console.log'))).toBe(true);
  });
});
