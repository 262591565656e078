import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { KibError } from '../core/errors.js';

export interface OvmfFiles {
  codePath: string;
  /** The template; each VM gets its own writable copy. */
  varsTemplatePath: string;
}

/** Directories and file pairs that distributions ship OVMF as (non-Secure-Boot builds). */
const CANDIDATES: readonly { dir: string; code: string; vars: string }[] = [
  { dir: '/usr/share/OVMF', code: 'OVMF_CODE_4M.fd', vars: 'OVMF_VARS_4M.fd' },
  { dir: '/usr/share/OVMF', code: 'OVMF_CODE.fd', vars: 'OVMF_VARS.fd' },
  { dir: '/usr/share/edk2/ovmf', code: 'OVMF_CODE.fd', vars: 'OVMF_VARS.fd' },
  { dir: '/usr/share/edk2/x64', code: 'OVMF_CODE.4m.fd', vars: 'OVMF_VARS.4m.fd' },
];

/** Finds an OVMF code/vars pair; `dirs` narrows the search (tests). */
export async function findOvmf(dirs?: readonly string[]): Promise<OvmfFiles> {
  const candidates =
    dirs === undefined
      ? CANDIDATES
      : dirs.flatMap((dir) => [
          { dir, code: 'OVMF_CODE_4M.fd', vars: 'OVMF_VARS_4M.fd' },
          { dir, code: 'OVMF_CODE.fd', vars: 'OVMF_VARS.fd' },
        ]);
  for (const candidate of candidates) {
    const codePath = join(candidate.dir, candidate.code);
    const varsTemplatePath = join(candidate.dir, candidate.vars);
    if ((await exists(codePath)) && (await exists(varsTemplatePath))) return { codePath, varsTemplatePath };
  }
  const looked = candidates.map((c) => join(c.dir, c.code)).join(', ');
  throw new KibError('FIRMWARE_MISSING', `UEFI firmware (OVMF) not found; looked for ${looked}`, {
    hint: 'Install the ovmf package, or set vm.firmware to bios.',
  });
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
