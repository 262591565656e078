import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { run } from '../../../src/process/index.js';
import { generateKeyPair } from '../../../src/ssh/index.js';
import { tempDir } from '../process/helpers.js';

describe('generateKeyPair', () => {
  it('makes an ed25519 key without passphrase, private to its owner', async () => {
    const dir = join(tempDir('keys'), 'ssh');
    const keys = await generateKeyPair(dir);
    expect(keys.privateKeyPath).toBe(join(dir, 'id_ed25519'));
    expect(keys.publicKey).toMatch(/^ssh-ed25519 [A-Za-z0-9+/=]+ kib-ephemeral$/);
    expect(statSync(keys.privateKeyPath).mode & 0o077).toBe(0);
    expect(statSync(dir).mode & 0o077).toBe(0);
    // No passphrase: the public key can be derived without one.
    const derived = await run('ssh-keygen', ['-y', '-P', '', '-f', keys.privateKeyPath]);
    expect(derived.stdout.trim().split(' ').slice(0, 2)).toEqual(keys.publicKey.split(' ').slice(0, 2));
  });

  it('replaces an existing key instead of prompting', async () => {
    const dir = tempDir('keys-again');
    const first = await generateKeyPair(dir);
    const second = await generateKeyPair(dir, { comment: 'second' });
    expect(second.publicKey).not.toBe(first.publicKey);
    expect(readFileSync(`${second.privateKeyPath}.pub`, 'utf8').trim()).toBe(second.publicKey);
    expect(second.publicKey.endsWith(' second')).toBe(true);
  });
});
