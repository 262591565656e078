import { describe, expect, it } from 'vitest';
import { KibError } from '../../../src/core/errors.js';
import {
  addressAddArgs,
  bridgeAddArgs,
  createPrivateNetwork,
  isValidInterfaceName,
  isValidNetnsName,
  linkDeleteArgs,
  linkMacArgs,
  listNetns,
  loopbackUpArgs,
  netnsAddArgs,
  netnsDeleteArgs,
  tapAddArgs,
  tapAttachArgs,
} from '../../../src/net/index.js';
import { run } from '../../../src/process/index.js';

describe('ip argv builders', () => {
  it('build the namespace, bridge and tap commands as exact arrays', () => {
    expect(netnsAddArgs('kib-c1')).toEqual(['netns', 'add', 'kib-c1']);
    expect(netnsDeleteArgs('kib-c1')).toEqual(['netns', 'delete', 'kib-c1']);
    expect(loopbackUpArgs('kib-c1')).toEqual(['-n', 'kib-c1', 'link', 'set', 'lo', 'up']);
    expect(bridgeAddArgs('kib-c1', 'br0')).toEqual(['-n', 'kib-c1', 'link', 'add', 'br0', 'type', 'bridge', 'forward_delay', '0', 'stp_state', '0']);
    expect(addressAddArgs('kib-c1', 'br0', '10.77.0.1/24')).toEqual(['-n', 'kib-c1', 'address', 'add', '10.77.0.1/24', 'dev', 'br0']);
    expect(tapAddArgs('kib-c1', 'tap0')).toEqual(['-n', 'kib-c1', 'tuntap', 'add', 'dev', 'tap0', 'mode', 'tap']);
    expect(tapAttachArgs('kib-c1', 'tap0', 'br0')).toEqual(['-n', 'kib-c1', 'link', 'set', 'tap0', 'master', 'br0', 'up']);
    expect(linkDeleteArgs('kib-c1', 'tap0')).toEqual(['-n', 'kib-c1', 'link', 'delete', 'tap0']);
    expect(linkMacArgs('kib-c1', 'br0', '52:54:00:4b:00:fe')).toEqual(['-n', 'kib-c1', 'link', 'set', 'br0', 'address', '52:54:00:4b:00:fe']);
  });

  it('accept only names the kernel and /run/netns take', () => {
    expect(isValidInterfaceName('tap0')).toBe(true);
    expect(isValidInterfaceName('x'.repeat(15))).toBe(true);
    expect(isValidInterfaceName('x'.repeat(16))).toBe(false);
    expect(isValidInterfaceName('a/b')).toBe(false);
    expect(isValidInterfaceName('a b')).toBe(false);
    expect(isValidInterfaceName('..')).toBe(false);
    expect(isValidNetnsName('kib-cluster-1')).toBe(true);
    expect(isValidNetnsName('../etc')).toBe(false);
    expect(isValidNetnsName('')).toBe(false);
  });
});

/** Creating namespaces needs CAP_SYS_ADMIN (root here, and in CI); elsewhere these cases cannot run. */
const canCreateNetns = process.getuid?.() === 0 && (await run('ip', ['netns', 'list'], { allowFailure: true }).then((r) => r.exitCode === 0, () => false));

describe.skipIf(!canCreateNetns)('createPrivateNetwork (needs root for network namespaces)', () => {
  const name = `kib-unit-${process.pid}`;

  it('creates the namespace, an addressed bridge and taps on it; remove() leaves nothing and is idempotent', async () => {
    const network = await createPrivateNetwork({ netns: name, bridgeAddress: '10.213.0.1/24' });
    try {
      expect(await listNetns()).toContain(name);
      expect(await network.addTap()).toBe('tap0');
      expect(await network.addTap('kibtap9')).toBe('kibtap9');
      expect(network.taps).toEqual(['tap0', 'kibtap9']);
      const links = JSON.parse((await run('ip', ['-n', name, '-json', 'link', 'show'])).stdout) as { ifname: string; master?: string; operstate: string }[];
      expect(links.find((l) => l.ifname === 'lo')?.operstate).toBe('UNKNOWN');
      expect(links.filter((l) => l.master === 'br0').map((l) => l.ifname).sort()).toEqual(['kibtap9', 'tap0']);
      const addresses = (await run('ip', ['-n', name, '-4', '-o', 'address', 'show', 'dev', 'br0'])).stdout;
      expect(addresses).toContain('inet 10.213.0.1/24');
      // Nothing of it is visible in the host's namespace.
      const hostLinks = (await run('ip', ['-o', 'link', 'show'])).stdout;
      expect(hostLinks).not.toMatch(/\bkibtap9\b/);
      await network.removeTap('kibtap9');
      expect(network.taps).toEqual(['tap0']);
    } finally {
      await Promise.all([network.remove(), network.remove()]);
    }
    await network.remove();
    expect(await listNetns()).not.toContain(name);
    await expect(network.addTap()).rejects.toMatchObject({ code: 'NETWORK_REMOVED' });
  });

  it('refuses a namespace name that is already in use, and leaves that namespace alone', async () => {
    await using first = await createPrivateNetwork({ netns: `${name}-dup` });
    const error = await createPrivateNetwork({ netns: `${name}-dup` }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KibError);
    expect((error as KibError).code).toBe('NETNS_EXISTS');
    expect(await listNetns()).toContain(first.netns);
  });

  it('rejects bad names before running anything', async () => {
    await expect(createPrivateNetwork({ netns: 'Bad Name' })).rejects.toMatchObject({ code: 'NETNS_NAME_INVALID' });
    await expect(createPrivateNetwork({ netns: `${name}-x`, bridge: 'a-very-long-bridge-name' })).rejects.toMatchObject({ code: 'IFNAME_INVALID' });
    expect(await listNetns()).not.toContain(`${name}-x`);
  });
});
