import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import { KibError } from '../core/errors.js';
import type { Accelerator } from './types.js';

export interface AcceleratorChoice {
  accelerator: Accelerator;
  /** Why this one, in words for `kib doctor` and the build log. */
  reason: string;
}

export interface AcceleratorProbe {
  cpuinfoPath?: string;
  kvmDevicePath?: string;
}

/**
 * Picks KVM only when it can work: `/dev/kvm` must be usable *and* the CPU must show
 * hardware virtualization (vmx/svm). A `/dev/kvm` without those flags exists on some nested
 * hosts; guests started there with `-accel kvm` hang, so it must not be trusted on its own.
 */
export async function detectAccelerator(
  requested: 'auto' | 'kvm' | 'tcg',
  probe: AcceleratorProbe = {},
): Promise<AcceleratorChoice> {
  if (requested === 'tcg') return { accelerator: 'tcg', reason: 'tcg requested in the build definition' };
  const cpuinfoPath = probe.cpuinfoPath ?? '/proc/cpuinfo';
  const kvmDevicePath = probe.kvmDevicePath ?? '/dev/kvm';

  const problems: string[] = [];
  const flags = await cpuVirtualizationFlag(cpuinfoPath);
  if (flags === undefined) problems.push(`the CPU shows no vmx or svm flag in ${cpuinfoPath}`);
  try {
    await access(kvmDevicePath, constants.R_OK | constants.W_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    problems.push(code === 'ENOENT' ? `${kvmDevicePath} does not exist` : `${kvmDevicePath} is not readable and writable (${code ?? 'error'})`);
  }

  if (problems.length === 0) {
    return { accelerator: 'kvm', reason: `${kvmDevicePath} is usable and the CPU has ${flags ?? 'vmx/svm'}` };
  }
  if (requested === 'kvm') {
    throw new KibError('KVM_UNAVAILABLE', `vm.accelerator is kvm, but KVM cannot work here: ${problems.join('; ')}`, {
      hint: 'Set vm.accelerator to auto (or tcg) to use software emulation, which is slower but works everywhere; on a VM host, enable nested virtualization.',
    });
  }
  return { accelerator: 'tcg', reason: `software emulation, because ${problems.join(' and ')}` };
}

async function cpuVirtualizationFlag(cpuinfoPath: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(cpuinfoPath, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const match = /^flags\s*:\s*(.*)$/.exec(line);
    if (match === null) continue;
    const flags = new Set((match[1] ?? '').split(/\s+/));
    if (flags.has('vmx')) return 'vmx';
    if (flags.has('svm')) return 'svm';
  }
  return undefined;
}
