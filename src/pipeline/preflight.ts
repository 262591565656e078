import type { BuildSpec } from '../config/index.js';
import { checkTools } from '../process/index.js';

export interface ToolNeed {
  command: string;
  purpose: string;
  packageName: string;
}

/** Every host tool `kib build` needs for this spec, with the Debian package that provides it. */
export function buildToolNeeds(spec: Pick<BuildSpec, 'outputs' | 'vm'>): ToolNeed[] {
  const needs: ToolNeed[] = [
    { command: 'qemu-system-x86_64', purpose: 'boot the build VM', packageName: 'qemu-system-x86' },
    { command: 'qemu-img', purpose: 'create the overlay and export qcow2', packageName: 'qemu-utils' },
    { command: 'ansible-playbook', purpose: 'run the node playbook', packageName: 'ansible-core' },
    { command: 'ssh', purpose: 'reach the build VM', packageName: 'openssh-client' },
    { command: 'ssh-keygen', purpose: 'make the ephemeral build key', packageName: 'openssh-client' },
    { command: 'xorriso', purpose: 'write the cloud-init seed ISO', packageName: 'xorriso' },
  ];
  return needs;
}

export function verifyToolNeeds(): ToolNeed[] {
  return buildToolNeeds({ outputs: { dir: '', formats: ['qcow2'], compress: true }, vm: { cpus: 1, memoryMiB: 1024, accelerator: 'auto', firmware: 'bios', bootTimeoutMs: 0 } }).filter(
    (need) => need.command !== 'ansible-playbook',
  );
}

/** Fails before anything slow starts when a host tool is missing, naming all of them at once. */
export async function checkHostTools(needs: readonly ToolNeed[]): Promise<void> {
  await checkTools(needs);
}
