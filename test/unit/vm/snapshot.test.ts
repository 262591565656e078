import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { VmNotRunningError } from '../../../src/core/errors.js';
import { run } from '../../../src/process/index.js';
import { incomingUri, readVmSnapshot, restoreVm, saveVmSnapshot, startVm, type StartedVm } from '../../../src/vm/index.js';
import { tempDir } from '../process/helpers.js';

// A machine without a guest OS (a blank disk: the firmware sits waiting for a boot device) is
// enough to prove the state machine and the QMP save/restore; test/vm/vm-lifecycle.test.ts does it
// with a real guest and its clock.

describe('incomingUri', () => {
  it('reads the state back through zstd or cat, with the path quoted for /bin/sh', () => {
    expect(incomingUri({ statePath: '/snap/memory.zst', compression: 'zstd' })).toBe('exec:zstd -q -dc /snap/memory.zst');
    expect(incomingUri({ statePath: "/snap/it's here/memory.bin", compression: 'none' })).toBe("exec:cat '/snap/it'\\''s here/memory.bin'");
  });
});

describe('VM states: running → snapshotted → restored → stopped', () => {
  it('a snapshotted or stopped handle refuses commands; the restore runs again from a new overlay on the frozen disk', async () => {
    const state = tempDir('snapshot-states');
    const disk = join(state, 'blank.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', disk, '16M']);
    const vm = await startVm({ name: 'snap', diskPath: disk, diskFormat: 'qcow2', cpus: 1, memoryMiB: 64, accelerator: 'tcg', firmware: 'bios', network: 'restricted', stateDir: state });
    let restored: StartedVm | undefined;
    try {
      expect(vm.state).toBe('running');
      const snapshot = await saveVmSnapshot(vm, { dir: join(state, 'snap') });
      expect(vm.state).toBe('snapshotted');
      expect(vm.isRunning()).toBe(false);
      expect(() => vm.qmp()).toThrow(VmNotRunningError);
      expect(() => vm.guestAgent()).toThrow(/it is snapshotted \(its memory was saved to .*memory\.zst and QEMU quit\)/);
      expect(snapshot.stateSizeBytes).toBeGreaterThan(0);
      expect(snapshot.diskPath).toBe(disk);
      expect(snapshot.startSpec).not.toHaveProperty('incoming');
      expect(await readVmSnapshot(join(state, 'snap'))).toEqual(snapshot);

      restored = await restoreVm(snapshot, { overlayPath: join(state, 'restored.qcow2'), overrides: { name: 'snap-restored' } });
      expect(restored.state).toBe('running');
      expect(await restored.qmp().execute('query-status')).toMatchObject({ status: 'running' });
      expect(restored.argv.join(' ')).toContain('restored.qcow2');
      const info = JSON.parse((await run('qemu-img', ['info', '--output=json', '--force-share', join(state, 'restored.qcow2')])).stdout) as { 'backing-filename': string };
      expect(info['backing-filename']).toBe(disk);

      await restored.stop({ graceMs: 0 });
      expect(restored.state).toBe('stopped');
      const error = (() => {
        try {
          restored.qmp();
          return undefined;
        } catch (e) {
          return e;
        }
      })();
      expect(error).toBeInstanceOf(VmNotRunningError);
      expect((error as VmNotRunningError).message).toMatch(/Cannot send a QMP command to VM snap-restored: it is stopped \(QEMU (was killed by SIG\w+|exited with code \d+)\)/);
      expect(existsSync(restored.runDir)).toBe(false);
    } finally {
      await restored?.stop({ graceMs: 0 });
      await vm.stop({ graceMs: 0 });
    }
  });

  it('refuses a snapshot written by another snapshot format', async () => {
    const dir = tempDir('snapshot-version');
    await run('sh', ['-c', `echo '{"formatVersion": 99}' > ${dir}/snapshot.json`]);
    await expect(readVmSnapshot(dir)).rejects.toMatchObject({ code: 'SNAPSHOT_VERSION' });
  });
});
