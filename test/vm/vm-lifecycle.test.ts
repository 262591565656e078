import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KibError, TimeoutError, VmExitedError, VmNotRunningError } from '../../src/core/errors.js';
import { createPrivateNetwork, listNetns } from '../../src/net/index.js';
import { run } from '../../src/process/index.js';
import type { KibEvent, Reporter } from '../../src/report/events.js';
import { copyFromGuest, generateKeyPair, sshExec, waitForCloudInit, waitForSsh, type SshTarget } from '../../src/ssh/index.js';
import { bootGuest, restoreVm, saveVmSnapshot, setGuestClock, startVm, waitForReady, whileVmRuns, type StartedGuest, type StartedVm } from '../../src/vm/index.js';
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

    it('saves a running guest to a memory snapshot and restores it: SSH answers again with the state kept, the clock is corrected; killing QEMU during a long SSH command is reported as the VM\'s death', async ({ annotate }) => {
      const { vm, target, guest } = await bootFixture('snapshot', 'bios', recordingReporter());
      await using _guest = guest;
      await waitForCloudInit(target, { vm, timeoutMs: BOOT_TIMEOUT_MS });
      // Something only the saved memory holds: a file in a tmpfs.
      await sshExec(target, 'echo kept-in-ram > /dev/shm/marker', { timeoutMs: 60_000 });

      const saveStarted = performance.now();
      const snapshot = await saveVmSnapshot(vm, { dir: join(root, 'snapshot', 'state') });
      await annotate(`save: ${((performance.now() - saveStarted) / 1000).toFixed(1)} s, ${(snapshot.stateSizeBytes / 1024 ** 2).toFixed(0)} MiB (zstd)`);
      expect(vm.state).toBe('snapshotted');
      expect(() => vm.guestAgent()).toThrow(VmNotRunningError);
      await expect(guest.exec('true')).rejects.toBeInstanceOf(VmNotRunningError);
      // Let the guest's clock fall behind, as it does while a frozen cluster waits on disk.
      await new Promise((resolve) => setTimeout(resolve, 10_000));

      const restoreStarted = performance.now();
      await using restored = await restoreVm(snapshot, { overlayPath: join(root, 'snapshot', 'restored.qcow2'), overrides: { name: 'snapshot-restored' } });
      const again: SshTarget = { ...target, port: restored.sshPort ?? 0 };
      await waitForSsh(again, { vm: restored, timeoutMs: 120_000, intervalMs: 250 });
      await annotate(`restore → SSH: ${((performance.now() - restoreStarted) / 1000).toFixed(1)} s (${restored.accelerator})`);
      expect((await sshExec(again, 'cat /dev/shm/marker', { timeoutMs: 60_000 })).stdout.trim()).toBe('kept-in-ram');

      const clock = await setGuestClock(restored, { timeoutMs: 120_000 });
      await annotate(`guest clock: ${(clock.skewBeforeMs / 1000).toFixed(1)} s off before, ${(clock.skewAfterMs / 1000).toFixed(2)} s after`);
      expect(clock.skewBeforeMs).toBeLessThan(-8_000);
      expect(Math.abs(clock.skewAfterMs)).toBeLessThan(2_000);
      const guestEpoch = Number((await sshExec(again, 'date +%s', { timeoutMs: 60_000 })).stdout.trim());
      expect(Math.abs(guestEpoch - Date.now() / 1000)).toBeLessThan(5);

      // Death in the middle of a command: the error is the VM's exit, not ssh's lost connection.
      setTimeout(() => process.kill(restored.pid, 'SIGKILL'), 2_000);
      const error = await whileVmRuns(restored, (signal) => sshExec(again, 'sleep 600', { signal, timeoutMs: 120_000 }), { what: 'running `sleep 600` over SSH' }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(VmExitedError);
      expect((error as VmExitedError).message).toMatch(/^VM snapshot-restored was killed by SIGKILL while running `sleep 600` over SSH/);
      expect((error as VmExitedError).consoleLogPath).toBe(restored.consoleLogPath);
      expect(restored.state).toBe('stopped');
    });
  });

  /**
   * Two guests on a private L2 segment: a bridge inside a network namespace this test creates and
   * removes. Each has a fixed MAC and a static address from its cloud-init network-config (no
   * DHCP anywhere); one also has a user-mode NIC (SSH through its forward inside the namespace),
   * the other only its tap (SSH to its bridge address). Both run at once, so they are small.
   */
  describe.skipIf(process.getuid?.() !== 0)('on a private network (needs root for the namespace)', () => {
    let fixture: string;
    const netnsName = `kib-vmtest-${process.pid}`;

    beforeAll(async () => {
      const { ensureDebianFixture } = await import('../support/fixture.js');
      fixture = await ensureDebianFixture();
    });

    it('two guests with fixed MACs and static IPs on a bridge in a namespace reach each other; removing the network leaves nothing', async ({ annotate }) => {
      const started = performance.now();
      {
        await using network = await createPrivateNetwork({ netns: netnsName, bridgeAddress: '10.213.7.1/24' });
        const nodes = [
          { name: 'lan-a', ip: '10.213.7.11', mac: '52:54:00:d5:07:0b', userNic: true },
          { name: 'lan-b', ip: '10.213.7.12', mac: '52:54:00:d5:07:0c', userNic: false },
        ];
        const taps = [await network.addTap(), await network.addTap()];
        const userMac = '52:54:00:d5:07:01';
        const boots = nodes.map((node, index) =>
          bootGuest({
            name: node.name,
            workDir: join(root, 'lan', node.name),
            disk: { kind: 'overlay', basePath: fixture, baseFormat: 'qcow2' },
            seed: {
              kind: 'nocloud',
              networkConfig: {
                version: 2,
                ethernets: {
                  lan0: { match: { macaddress: node.mac }, addresses: [`${node.ip}/24`] },
                  ...(node.userNic ? { user0: { match: { macaddress: userMac }, dhcp4: true } } : {}),
                },
              },
            },
            vm: {
              cpus: 1,
              memoryMiB: 768,
              accelerator: 'auto',
              firmware: 'bios',
              netns: network.netns,
              nics: [
                ...(node.userNic ? [{ kind: 'user' as const, mode: 'restricted' as const, macAddress: userMac }] : []),
                { kind: 'tap' as const, ifname: taps[index] ?? '', macAddress: node.mac },
              ],
              stateDir: join(root, 'state'),
            },
            ...(node.userNic ? {} : { sshAddress: { host: node.ip } }),
            wait: 'ssh',
            bootTimeoutMs: BOOT_TIMEOUT_MS,
          }),
        );
        const settled = await Promise.allSettled(boots);
        const guests = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
        try {
          for (const r of settled) if (r.status === 'rejected') throw r.reason;
          const [a, b] = guests as [StartedGuest, StartedGuest];
          await annotate(`both guests answer SSH after ${((performance.now() - started) / 1000).toFixed(1)} s`);
          expect(a.ssh).toMatchObject({ host: '127.0.0.1', netns: netnsName });
          expect(b.ssh).toMatchObject({ host: '10.213.7.12', port: 22, netns: netnsName });
          // The bridge reaches both (b is only reachable this way).
          expect((await a.exec('ip -4 -o addr show', { timeoutMs: 60_000 })).stdout).toContain('inet 10.213.7.11/24');
          // Guest to guest over the bridge: each opens the other's SSH port and reads its banner.
          const banner = (peer: string): string => `timeout 10 bash -c 'exec 3<>/dev/tcp/${peer}/22; head -c 7 <&3'`;
          expect((await a.exec(banner('10.213.7.12'), { timeoutMs: 60_000 })).stdout).toBe('SSH-2.0');
          expect((await b.exec(banner('10.213.7.11'), { timeoutMs: 60_000 })).stdout).toBe('SSH-2.0');
          // And the peer's neighbour entry carries the fixed MAC.
          expect((await a.exec('ip neigh show 10.213.7.12', { timeoutMs: 60_000 })).stdout).toContain('52:54:00:d5:07:0c');
          // QEMU runs inside the namespace: the tap is open there, and nothing appeared on the host.
          expect((await run('ip', ['-o', 'link', 'show'])).stdout).not.toContain(taps[0] ?? 'tap0');
        } finally {
          for (const guest of guests) await guest[Symbol.asyncDispose]();
        }
      }
      expect(await listNetns()).not.toContain(netnsName);
      expect(await qemuProcessesMentioning(join(root, 'lan'), { ignoreZombies: true })).toEqual([]);
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
