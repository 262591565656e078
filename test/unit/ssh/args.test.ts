import { describe, expect, it } from 'vitest';
import { scpFromArgs, shellQuote, sshArgs, type SshTarget } from '../../../src/ssh/index.js';

const target: SshTarget = { host: '127.0.0.1', port: 40022, user: 'kib', privateKeyPath: '/work/ssh/id_ed25519' };

const options = [
  '-o',
  'BatchMode=yes',
  '-o',
  'StrictHostKeyChecking=no',
  '-o',
  'UserKnownHostsFile=/dev/null',
  '-o',
  'LogLevel=ERROR',
  '-o',
  'ConnectTimeout=10',
  '-o',
  'IdentitiesOnly=yes',
  '-o',
  'ServerAliveInterval=15',
  '-o',
  'ServerAliveCountMax=4',
  '-i',
  '/work/ssh/id_ed25519',
];

describe('sshArgs', () => {
  it('passes a command line through to the remote shell', () => {
    expect(sshArgs(target, 'cloud-init status --wait')).toEqual([...options, '-p', '40022', '--', 'kib@127.0.0.1', 'cloud-init status --wait']);
  });

  it('quotes each word of an argument array for the remote shell', () => {
    expect(sshArgs(target, ['cat', '--', '/var/lib/kib/inventory file.json', "it's"])).toEqual([
      ...options,
      '-p',
      '40022',
      '--',
      'kib@127.0.0.1',
      `cat -- '/var/lib/kib/inventory file.json' 'it'\\''s'`,
    ]);
  });
});

describe('scpFromArgs', () => {
  it('copies with the same options, a capital -P and brackets around IPv6 hosts', () => {
    expect(scpFromArgs(target, '/var/lib/kib/inventory.json', '/work/inventory.json')).toEqual([
      ...options,
      '-P',
      '40022',
      '-q',
      '--',
      'kib@127.0.0.1:/var/lib/kib/inventory.json',
      '/work/inventory.json',
    ]);
    expect(scpFromArgs({ ...target, host: '::1' }, '/a', '/b')).toContain('kib@[::1]:/a');
  });
});

describe('shellQuote', () => {
  it('leaves plain words alone and single-quotes everything else', () => {
    expect(shellQuote('uname')).toBe('uname');
    expect(shellQuote('-r')).toBe('-r');
    expect(shellQuote('')).toBe("''");
    expect(shellQuote('a b')).toBe("'a b'");
    expect(shellQuote('$(reboot)')).toBe("'$(reboot)'");
    expect(shellQuote("don't")).toBe("'don'\\''t'");
  });
});
