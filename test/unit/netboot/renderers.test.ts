import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { joinCommand, machineBootstrapToken, mergeCloudConfig, renderMetaData, renderUserData } from '../../../src/netboot/cloud-config.js';
import { renderNewcCpio } from '../../../src/netboot/cpio.js';
import { dnsmasqArgs, renderDnsmasqConfig, renderDnsmasqHosts, type DnsmasqConfigSpec } from '../../../src/netboot/dnsmasq-config.js';
import { parseMachine } from '../../../src/netboot/machines.js';
import { renderChainScript, renderInstructions, renderIpxeScript, shellQuote } from '../../../src/netboot/scripts.js';
import { networkOf, reportEvent } from '../../../src/netboot/service.js';
import { parseLddOutput } from '../../../src/netboot/stage2.js';
import { run } from '../../../src/process/index.js';

const machine = (name: string, mac: string, ip: string, extra: Record<string, unknown> = {}) =>
  parseMachine({ apiVersion: 'netboot.kib.dev/v1alpha1', kind: 'Machine', metadata: { name }, spec: { macAddress: mac, ipAddress: ip, ...extra } }, name);

const spec: DnsmasqConfigSpec = {
  interface: 'br0',
  serverAddress: '10.77.0.1',
  network: '10.77.0.0',
  netmask: '255.255.255.0',
  httpPort: 8080,
  tftpRoot: '/state/tftp',
  hostsFile: '/state/dnsmasq.hosts',
  proxyDhcp: false,
  routerAdvertisement: true,
  leaseFile: '/state/leases',
  pidFile: '/state/pid',
  user: 'root',
};

describe('dnsmasq configuration', () => {
  it('answers known MACs only, with infinite static leases, iPXE by firmware, the script URL to iPXE, and an RA', () => {
    const lines = renderDnsmasqConfig(spec).split('\n');
    expect(lines).toEqual(
      expect.arrayContaining([
        'port=0',
        'interface=br0',
        'bind-interfaces',
        'user=root',
        'dhcp-range=10.77.0.0,static,255.255.255.0,infinite',
        'dhcp-hostsfile=/state/dnsmasq.hosts',
        'dhcp-ignore=tag:!known',
        'dhcp-userclass=set:ipxe,iPXE',
        'dhcp-match=set:efi64,option:client-arch,7',
        'dhcp-boot=tag:pxe,tag:!ipxe,tag:!efi64,undionly.kpxe,,10.77.0.1',
        'dhcp-boot=tag:pxe,tag:!ipxe,tag:efi64,snponly.efi,,10.77.0.1',
        'dhcp-boot=tag:ipxe,http://10.77.0.1:8080/boot.ipxe',
        'enable-ra',
        'dhcp-range=::,constructor:br0,ra-only',
      ]),
    );
    expect(lines.some((line) => line.includes('proxy'))).toBe(false);
  });

  it('the hosts file has one dhcp-host line per Machine, infinite', () => {
    expect(renderDnsmasqHosts([machine('a', '52:54:00:00:00:01', '10.77.0.11'), machine('b', '52:54:00:00:00:02', '10.77.0.12')])).toBe(
      '52:54:00:00:00:01,10.77.0.11,a,infinite\n52:54:00:00:00:02,10.77.0.12,b,infinite\n',
    );
  });

  it('in proxy-DHCP mode hands out no addresses and offers pxe-service entries for BIOS and x86-64 EFI', () => {
    const text = renderDnsmasqConfig({ ...spec, proxyDhcp: true, routerAdvertisement: false });
    expect(text).toContain('dhcp-range=10.77.0.0,proxy,255.255.255.0');
    expect(text).toContain('pxe-service=tag:!ipxe,x86PC,"kib netboot (BIOS)",undionly,10.77.0.1');
    expect(text).toContain('pxe-service=tag:!ipxe,X86-64_EFI,"kib netboot (UEFI)",snponly.efi,10.77.0.1');
    expect(text).not.toContain('static');
    expect(text).not.toContain('enable-ra');
  });

  it('dnsmasq itself accepts the configuration (--test)', async () => {
    const { writeFile, mkdtemp, rm } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(join(tmpdir(), 'kib-dnsmasq-'));
    try {
      for (const proxyDhcp of [false, true]) {
        const file = join(dir, 'dnsmasq.conf');
        await writeFile(join(dir, 'hosts'), renderDnsmasqHosts([machine('a', '52:54:00:00:00:01', '10.77.0.11')]));
        await writeFile(file, renderDnsmasqConfig({ ...spec, proxyDhcp, tftpRoot: dir, hostsFile: join(dir, 'hosts'), leaseFile: join(dir, 'l'), pidFile: join(dir, 'p') }));
        const result = await run('dnsmasq', ['--test', `--conf-file=${file}`], { allowFailure: true });
        expect(result.stderr + result.stdout).toMatch(/syntax check OK/);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('runs in the foreground, logging to stderr', () => {
    expect(dnsmasqArgs('/x/dnsmasq.conf')).toEqual(['--keep-in-foreground', '--log-facility=-', '--conf-file=/x/dnsmasq.conf']);
  });
});

describe('iPXE scripts and instructions', () => {
  const m = machine('node-1', '52:54:00:00:00:01', '10.77.0.11');

  it('chains to the per-MAC script, installs with stage2, or leaves to the local disk', () => {
    expect(renderChainScript('http://10.77.0.1:8080')).toBe('#!ipxe\nchain http://10.77.0.1:8080/ipxe/${netX/mac}\n');
    const install = renderIpxeScript(m, { kind: 'stage2' }, 'http://s:1');
    expect(install).toContain('kernel http://s:1/stage2/vmlinuz initrd=initrd console=tty0 console=ttyS0,115200 quiet kib.server=http://s:1 kib.mac=52:54:00:00:00:01\n');
    expect(install).toContain('initrd --name initrd http://s:1/stage2/initrd\nboot\n');
    const local = renderIpxeScript(m, { kind: 'local', why: 'node-1 is joined' }, 'http://s:1');
    expect(local).toMatch(/exit\n$/);
    expect(local).not.toContain('kernel');
  });

  it('instructions are shell assignments that survive quotes', () => {
    const text = renderInstructions({ name: 'node-1', imageUrl: 'http://s/i', imageSha256: 'f'.repeat(64), imageSizeBytes: 10, diskModel: "it's", allowWipe: false, cidataUrl: 'http://s/c/' });
    expect(text).toContain("KIB_DISK_MODEL='it'\\''s'\n");
    expect(text).toContain("KIB_ALLOW_WIPE='no'\n");
    expect(text).toContain("KIB_DISK_PATH=''\n");
    expect(text).toContain("KIB_MEASURE_DISK='no'\n");
    expect(renderInstructions({ name: 'n', imageUrl: 'u', imageSha256: 'f', imageSizeBytes: 1, allowWipe: false, cidataUrl: 'c', measureDisk: true })).toContain("KIB_MEASURE_DISK='yes'\n");
    expect(shellQuote('a b')).toBe("'a b'");
  });
});

describe('cloud-config', () => {
  const m = machine('node-1', '52:54:00:00:00:01', '10.77.0.11', {
    role: 'control-plane',
    cloudConfig: { runcmd: ['echo first'], write_files: [{ path: '/x', content: 'y' }], hostname: 'ignored-not' },
  });
  const join = { endpoint: '10.0.0.1:6443', caCertHash: `sha256:${'a'.repeat(64)}`, token: machineBootstrapToken('s', 'node-1', 'i1'), certificateKey: 'k' };

  it('bootstrap tokens are per Machine and per install, in kubeadm form', () => {
    expect(join.token).toMatch(/^[a-z0-9]{6}\.[a-z0-9]{16}$/);
    expect(machineBootstrapToken('s', 'node-2', 'i1')).not.toBe(join.token);
    expect(machineBootstrapToken('s', 'node-1', 'i2')).not.toBe(join.token);
    expect(machineBootstrapToken('s', 'node-1', 'i1')).toBe(join.token);
  });

  it('joins as a control plane with the certificate key', () => {
    expect(joinCommand(m, join)).toEqual(['kubeadm', 'join', '10.0.0.1:6443', '--token', join.token, '--discovery-token-ca-cert-hash', join.caCertHash, '--node-name', 'node-1', '--control-plane', '--certificate-key', 'k']);
  });

  it('user-data: the login key, booted and joined reports around the join, the Machine\'s own lists first', () => {
    const text = renderUserData({ machine: m, server: 'http://s:8080', sshAuthorizedKeys: ['ssh-ed25519 AAAA k'], installId: 'i1', join });
    expect(text.startsWith('#cloud-config\n')).toBe(true);
    const data = parse(text) as { users: { name: string; ssh_authorized_keys: string[] }[]; runcmd: unknown[]; hostname: string; write_files: unknown[] };
    expect(data.users[0]).toMatchObject({ name: 'kib', ssh_authorized_keys: ['ssh-ed25519 AAAA k'] });
    expect(data.runcmd[0]).toBe('echo first');
    const command = (data.runcmd[1] as string[])[2]!;
    expect(command).toMatch(/data=b"phase=booted".*; kubeadm join 10\.0\.0\.1:6443 --token \S+ .* && python3 .*phase=joined/);
    expect(data.write_files).toEqual([{ path: '/x', content: 'y' }]);
    expect(parse(renderMetaData({ machine: m, server: '', sshAuthorizedKeys: [], installId: 'i1' }))).toEqual({ 'instance-id': 'kib-node-1-i1', 'local-hostname': 'node-1' });
  });

  it('merges: lists concatenate (theirs first), other keys are theirs', () => {
    expect(mergeCloudConfig({ a: [1], b: 'x' }, { a: [2], b: 'y', c: 3 })).toEqual({ a: [1, 2], b: 'x', c: 3 });
  });
});

describe('small parsers', () => {
  it('networkOf', () => {
    expect(networkOf('10.77.0.1', 24)).toEqual({ network: '10.77.0.0', netmask: '255.255.255.0' });
    expect(networkOf('192.168.17.200', 20)).toEqual({ network: '192.168.16.0', netmask: '255.255.240.0' });
  });

  it('reports become events; unknown phases are refused', () => {
    expect(reportEvent('failed', new URLSearchParams('reason=sha256+mismatch'))).toEqual({ type: 'failed', reason: 'sha256 mismatch' });
    expect(reportEvent('progress', new URLSearchParams('bytesWritten=42'))).toEqual({ type: 'progress', bytesWritten: 42 });
    expect(reportEvent('bogus', new URLSearchParams())).toBeUndefined();
    expect(reportEvent('writing', new URLSearchParams('disk=/dev/vda&streamBytes=100&streamWriteSeconds=2.5&streamReadSeconds=1.25'))).toEqual({
      type: 'writing',
      disk: '/dev/vda',
      diskSpeed: { bytes: 100, writeSeconds: 2.5, readSeconds: 1.25 },
    });
    expect(reportEvent('writing', new URLSearchParams('disk=/dev/vda'))).toEqual({ type: 'writing', disk: '/dev/vda' });
  });

  it('ldd output gives the libraries and the loader', () => {
    const text = '\tlinux-vdso.so.1 (0x00007ff)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x1)\n\t/lib64/ld-linux-x86-64.so.2 (0x2)\n';
    expect(parseLddOutput(text)).toEqual(['/lib/x86_64-linux-gnu/libc.so.6', '/lib64/ld-linux-x86-64.so.2']);
  });
});

describe('newc cpio', () => {
  it('GNU cpio lists what was written: directories, files with modes, a symlink and a device node', async () => {
    const archive = renderNewcCpio([
      { type: 'file', path: 'bin/sh', mode: 0o755, data: Buffer.from('#!x\n') },
      { type: 'dir', path: 'bin' },
      { type: 'symlink', path: 'bin/ash', target: 'sh' },
      { type: 'char', path: 'dev/console', major: 5, minor: 1 },
      { type: 'dir', path: 'dev' },
    ]);
    expect(archive.length % 512).toBe(0);
    expect(renderNewcCpio([{ type: 'dir', path: 'a' }]).equals(renderNewcCpio([{ type: 'dir', path: 'a' }]))).toBe(true);
    const listing = await run('cpio', ['-itv', '--quiet'], { input: archive });
    const lines = listing.stdout.trim().split('\n');
    expect(lines.map((line) => line.replace(/ -> .*$/, '').split(/\s+/).slice(-1)[0])).toEqual(['bin', 'bin/ash', 'bin/sh', 'dev', 'dev/console']);
    expect(lines.find((line) => line.endsWith(' bin/sh'))).toMatch(/^-rwxr-xr-x/);
    expect(lines.find((line) => line.includes('bin/ash'))).toMatch(/^lrwxrwxrwx.* bin\/ash -> sh$/);
    expect(lines.find((line) => line.endsWith('dev/console'))).toMatch(/^crw-------.*5,\s+1/);
  });
});
