import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KibError } from '../../../src/core/errors.js';
import { detectAccelerator } from '../../../src/vm/index.js';
import { tempDir } from '../process/helpers.js';

function fakeHost(flags: string, kvm: 'rw' | 'missing' | 'unreadable'): { cpuinfoPath: string; kvmDevicePath: string } {
  const dir = tempDir('accel');
  const cpuinfoPath = join(dir, 'cpuinfo');
  writeFileSync(cpuinfoPath, `processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: ${flags}\n\nprocessor\t: 1\nflags\t\t: ${flags}\n`);
  const kvmDevicePath = join(dir, 'kvm');
  if (kvm !== 'missing') {
    writeFileSync(kvmDevicePath, '');
    if (kvm === 'unreadable') chmodSync(kvmDevicePath, 0o000);
  }
  return { cpuinfoPath, kvmDevicePath };
}

const withoutVmx = 'fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge hypervisor lahf_lm';

describe('detectAccelerator', () => {
  it('uses KVM when the device is usable and the CPU has vmx or svm', async () => {
    expect(await detectAccelerator('auto', fakeHost(`${withoutVmx} vmx ept`, 'rw'))).toMatchObject({ accelerator: 'kvm' });
    expect(await detectAccelerator('kvm', fakeHost(`${withoutVmx} svm npt`, 'rw'))).toMatchObject({ accelerator: 'kvm' });
  });

  it('does not trust /dev/kvm alone: without vmx/svm it falls back to TCG and says why', async () => {
    const choice = await detectAccelerator('auto', fakeHost(withoutVmx, 'rw'));
    expect(choice.accelerator).toBe('tcg');
    expect(choice.reason).toContain('no vmx or svm flag');
  });

  it('falls back to TCG when /dev/kvm is missing', async () => {
    const host = fakeHost(`${withoutVmx} vmx`, 'missing');
    const choice = await detectAccelerator('auto', host);
    expect(choice).toEqual({ accelerator: 'tcg', reason: `software emulation, because ${host.kvmDevicePath} does not exist` });
  });

  it('falls back to TCG when /dev/kvm cannot be opened for writing', async () => {
    // root may open anything; then the permission case cannot be produced with a file.
    const host = fakeHost(`${withoutVmx} vmx`, 'unreadable');
    const choice = await detectAccelerator('auto', host);
    if (process.getuid?.() === 0) expect(choice.accelerator).toBe('kvm');
    else expect(choice.reason).toContain('not readable and writable');
  });

  it('refuses an explicit kvm request that cannot work, with a hint', async () => {
    const error = await detectAccelerator('kvm', fakeHost(withoutVmx, 'missing')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KibError);
    expect((error as KibError).code).toBe('KVM_UNAVAILABLE');
    expect((error as KibError).message).toContain('no vmx or svm flag');
    expect((error as KibError).message).toContain('does not exist');
    expect((error as KibError).hint).toContain('vm.accelerator');
  });

  it('uses TCG when asked, without looking at the host', async () => {
    expect(await detectAccelerator('tcg', { cpuinfoPath: '/nonexistent', kvmDevicePath: '/nonexistent' })).toEqual({
      accelerator: 'tcg',
      reason: 'tcg requested in the build definition',
    });
  });

  it('on this machine picks TCG (KVM cannot work here: no vmx/svm)', async () => {
    expect((await detectAccelerator('auto')).accelerator).toBe('tcg');
  });
});
