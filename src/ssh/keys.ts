import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../process/index.js';

export interface SshKeyPair {
  privateKeyPath: string;
  /** The `ssh-ed25519 AAAA… comment` line for authorized_keys / cloud-init. */
  publicKey: string;
}

/** A fresh ed25519 key pair without passphrase, for one VM's lifetime. */
export async function generateKeyPair(dir: string, options: { comment?: string; signal?: AbortSignal } = {}): Promise<SshKeyPair> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const privateKeyPath = join(dir, 'id_ed25519');
  // ssh-keygen would ask before overwriting, and stdin is not connected.
  await rm(privateKeyPath, { force: true });
  await rm(`${privateKeyPath}.pub`, { force: true });
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', options.comment ?? 'kib-ephemeral', '-f', privateKeyPath], {
    timeoutMs: 30_000,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
  const publicKey = (await readFile(`${privateKeyPath}.pub`, 'utf8')).trim();
  return { privateKeyPath, publicKey };
}
