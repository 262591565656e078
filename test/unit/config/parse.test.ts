import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/core/errors.js';
import type { KibEvent } from '../../../src/report/events.js';
import { parseBuildSpec } from '../../../src/config/load.js';

const CONFIG = '/projects/node-image/image.yaml';
const CWD = '/home/user/work';
const MINIMAL = 'name: test-image\nbase:\n  url: https://example.org/base.qcow2\nkubernetes:\n  version: 1.36.1\n';

function parse(text: string, overrides?: Parameters<typeof parseBuildSpec>[1]['overrides']) {
  return parseBuildSpec(text, { configPath: CONFIG, cwd: CWD, overrides });
}

function issuesOf(text: string, overrides?: Parameters<typeof parseBuildSpec>[1]['overrides']): { path: string; message: string }[] {
  try {
    parse(text, overrides);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return [...(error as ConfigError).issues];
  }
  throw new Error('expected a ConfigError');
}

function messageAt(issues: { path: string; message: string }[], path: string): string {
  const found = issues.filter((issue) => issue.path === path);
  expect(found, `an issue at ${path} in ${JSON.stringify(issues)}`).toHaveLength(1);
  return found[0]?.message ?? '';
}

describe('defaults', () => {
  it('fills in every optional field of a minimal definition', () => {
    const spec = parse(MINIMAL);
    expect(spec).toMatchObject({
      configPath: CONFIG,
      name: 'test-image',
      base: { url: 'https://example.org/base.qcow2', checksumUrl: undefined, sha256: undefined, osFamily: 'redhat' },
      kubernetes: { version: '1.36.1', packages: 'required' },
      node: { selinux: 'permissive', firewall: true, network: { podCidrs: ['10.244.0.0/16'], serviceCidrs: ['10.96.0.0/12'], overlayPorts: ['4789/udp', '8472/udp', '179/tcp'] } },
      disk: { sizeBytes: 20 * 1024 ** 3 },
      vm: { cpus: 2, memoryMiB: 2048, accelerator: 'auto', firmware: 'bios', bootTimeoutMs: 600_000 },
      provision: { playbookPath: '/projects/node-image/playbook/site.yml', vars: {} },
      outputs: { dir: '/projects/node-image/output', formats: ['qcow2', 'containerdisk'], compress: true },
    });
    expect(spec.configSha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('requires the fields that decide what the image is', () => {
    const issues = issuesOf('vm:\n  cpus: 4\n');
    expect(issues.map((issue) => issue.path).sort()).toEqual(['base', 'kubernetes', 'name']);
    expect(messageAt(issues, 'name')).toBe('required');
  });

  it('converts sizes and durations once, into bytes, MiB and milliseconds', () => {
    const spec = parse(`${MINIMAL}disk:\n  size: 40G\nvm:\n  memory: 1536M\n  bootTimeout: 1h30m\n`);
    expect(spec.disk.sizeBytes).toBe(40 * 1024 ** 3);
    expect(spec.vm.memoryMiB).toBe(1536);
    expect(spec.vm.bootTimeoutMs).toBe(5_400_000);
  });
});

describe('every problem at once', () => {
  const broken = [
    'name: Rocky_9',
    'base:',
    '  url: ftp://mirror.example.org/base.qcow2',
    '  sha256: 92C206CC6F790C61583247EEFE87890F8828420662C17CACF247CEC78AB4EEC8',
    '  osFamily: suse',
    'kubernetes:',
    '  version: v1.36.1',
    '  pakages: auto',
    'disk:',
    '  size: lots',
    'vm:',
    '  cpus: 0',
    '  memory: 100M',
    '  bootTimeout: 600',
    'provision:',
    '  vars:',
    '    kib_image_name: mine',
    'outputs:',
    '  formats: [raw, raw, vmdk]',
    'extra: true',
    '',
  ].join('\n');

  it('reports each with its path and what was expected', () => {
    const issues = issuesOf(broken);
    expect(issues.map((issue) => issue.path).sort()).toEqual(
      [
        'base.osFamily',
        'base.sha256',
        'base.url',
        'disk.size',
        'extra',
        'kubernetes.pakages',
        'kubernetes.version',
        'name',
        'outputs.formats[2]',
        'provision.vars.kib_image_name',
        'vm.bootTimeout',
        'vm.cpus',
        'vm.memory',
      ].sort(),
    );
    expect(messageAt(issues, 'disk.size')).toBe('expected a size like "20G", got "lots" (line 10)');
    expect(messageAt(issues, 'base.url')).toContain('expected an http(s) or file URL or a local path, got the scheme "ftp:"');
    expect(messageAt(issues, 'base.sha256')).toContain('lowercase');
    expect(messageAt(issues, 'base.osFamily')).toBe('expected one of "redhat", "debian", got "suse" (line 5)');
    expect(messageAt(issues, 'kubernetes.pakages')).toContain('unknown key (did you mean "packages"?)');
    expect(messageAt(issues, 'vm.cpus')).toBe('must be at least 1, got 0 (line 12)');
    expect(messageAt(issues, 'vm.memory')).toBe('must be at least 512M, got "100M" (line 13)');
    expect(messageAt(issues, 'vm.bootTimeout')).toContain('add a unit');
    expect(messageAt(issues, 'provision.vars.kib_image_name')).toContain('set by kib itself');
    expect(messageAt(issues, 'extra')).toContain('unknown key; expected one of: name, base, kubernetes');
  });

  it('puts all of them in one error whose message lists them', () => {
    let error: unknown;
    try {
      parse(broken);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const configError = error as ConfigError;
    expect(configError.code).toBe('CONFIG_INVALID');
    expect(configError.file).toBe(CONFIG);
    expect(configError.message).toContain(`${CONFIG} has ${String(configError.issues.length)} problems:`);
    expect(configError.message).toContain('  disk.size: expected a size like "20G", got "lots"');
  });

  it('adds override problems to the same report', () => {
    const issues = issuesOf('name: x\nbase:\n  url: https://e.org/b.qcow2\nkubernetes:\n  version: "1.36"\n', {
      baseSha256: 'abc',
      accelerator: 'hvf',
      firmware: 'coreboot',
    });
    expect(issues.map((issue) => issue.path).sort()).toEqual(['base.sha256', 'kubernetes.version', 'vm.accelerator', 'vm.firmware']);
    expect(messageAt(issues, 'base.sha256')).toContain('--base-sha256');
    expect(messageAt(issues, 'vm.accelerator')).toBe('--accelerator: expected one of auto, kvm, tcg, got "hvf"');
  });
});

describe('strict objects', () => {
  it('rejects unknown keys at every level, suggesting the likely one', () => {
    const issues = issuesOf(`${MINIMAL}vm:\n  cpu: 4\noutput:\n  dir: out\n`);
    expect(messageAt(issues, 'vm.cpu')).toMatch(/^unknown key \(did you mean "cpus"\?\)/);
    expect(messageAt(issues, 'output')).toMatch(/^unknown key \(did you mean "outputs"\?\)/);
    expect(messageAt(issues, 'output')).toContain('(line 8)');
  });
});

describe('kubernetes.version', () => {
  const withVersion = (version: string): string => `name: x\nbase:\n  url: https://e.org/b.qcow2\nkubernetes:\n  version: ${version}\n`;

  it.each(['1.36.1', '1.37.0', '"1.36.10"'])('accepts the exact release %s', (version) => {
    expect(parse(withVersion(version)).kubernetes.version).toBe(version.replaceAll('"', ''));
  });

  it.each([
    ['v1.36.1', 'without the "v": "1.36.1"'],
    ['"1.36"', 'names a minor series, not a release'],
    ['1.36', 'got the number 1.36'],
    ['"v1.36"', 'names a minor series'],
    ['latest', '"latest" moves over time'],
    ['stable', 'moves over time'],
    ['"^1.36.1"', 'ranges are not allowed'],
    ['"~1.36.0"', 'ranges are not allowed'],
    ['">=1.36.0"', 'ranges are not allowed'],
    ['1.36.x', 'ranges are not allowed'],
    ['1.36.1-rc.0', 'pre-releases'],
    ['one', 'MAJOR.MINOR.PATCH'],
  ])('rejects %s with a helpful message', (version, expected) => {
    expect(messageAt(issuesOf(withVersion(version)), 'kubernetes.version')).toContain(expected);
  });
});

describe('kubernetes.series', () => {
  const withKubernetes = (lines: string): string => `name: x\nbase:\n  url: https://e.org/b.qcow2\nkubernetes:\n${lines}`;

  it('follows a series instead of pinning a release: the version stays open until a lock resolves it', () => {
    expect(parse(withKubernetes('  series: "1.37"\n')).kubernetes).toEqual({
      version: undefined,
      series: '1.37',
      pinnedBy: 'series',
      packages: 'required',
      lockedPackages: undefined,
    });
    expect(parse(withKubernetes('  version: 1.37.2\n')).kubernetes).toMatchObject({ version: '1.37.2', series: '1.37', pinnedBy: 'version' });
  });

  it.each([
    ['  series: 1.37\n', 'kubernetes.series', 'quoted string like "1.37"'],
    ['  series: "v1.37"\n', 'kubernetes.series', 'without the "v": "1.37"'],
    ['  series: "1.37.2"\n', 'kubernetes.series', 'write version: "1.37.2" to pin it'],
    ['  series: latest\n', 'kubernetes.series', 'a minor series like "1.37"'],
    ['  version: 1.37.2\n  series: "1.37"\n', 'kubernetes.series', 'not both'],
    ['  packages: auto\n', 'kubernetes.version', 'or instead series: "1.37"'],
  ])('rejects %j at %s', (lines, path, expected) => {
    expect(messageAt(issuesOf(withKubernetes(lines)), path)).toContain(expected);
  });
});

describe('sizes and limits', () => {
  it('needs a disk of at least 2G', () => {
    expect(messageAt(issuesOf(`${MINIMAL}disk:\n  size: 1G\n`), 'disk.size')).toContain('must be at least 2G, got "1G"');
    expect(parse(`${MINIMAL}disk:\n  size: 2G\n`).disk.sizeBytes).toBe(2 * 1024 ** 3);
  });

  it('needs at least 512 MiB of memory, in whole MiB', () => {
    expect(parse(`${MINIMAL}vm:\n  memory: 512M\n`).vm.memoryMiB).toBe(512);
    expect(messageAt(issuesOf(`${MINIMAL}vm:\n  memory: 511M\n`), 'vm.memory')).toContain('at least 512M');
    expect(messageAt(issuesOf(`${MINIMAL}vm:\n  memory: 1000000000\n`), 'vm.memory')).toContain('whole number of MiB');
  });

  it('takes 1 to 64 whole CPUs', () => {
    expect(parse(`${MINIMAL}vm:\n  cpus: 64\n`).vm.cpus).toBe(64);
    expect(messageAt(issuesOf(`${MINIMAL}vm:\n  cpus: 65\n`), 'vm.cpus')).toContain('at most 64');
    expect(messageAt(issuesOf(`${MINIMAL}vm:\n  cpus: 2.5\n`), 'vm.cpus')).toContain('expected a whole number, got 2.5');
    expect(messageAt(issuesOf(`${MINIMAL}vm:\n  cpus: two\n`), 'vm.cpus')).toContain('got "two"');
  });

  it('checks types with plain words', () => {
    expect(messageAt(issuesOf(`${MINIMAL}outputs:\n  compress: yes please\n`), 'outputs.compress')).toBe(
      'expected true or false, got "yes please" (line 7)',
    );
    expect(messageAt(issuesOf(`${MINIMAL}disk: 20G\n`), 'disk')).toContain('expected a mapping, got "20G"');
  });
});

describe('outputs.formats', () => {
  const withFormats = (formats: string): string => `${MINIMAL}outputs:\n  formats: ${formats}\n`;

  it('always includes qcow2, in canonical order', () => {
    expect(parse(withFormats('[raw]')).outputs.formats).toEqual(['qcow2', 'raw']);
    expect(parse(withFormats('[containerdisk, raw, qcow2]')).outputs.formats).toEqual(['qcow2', 'raw', 'containerdisk']);
    expect(parse(withFormats('[]')).outputs.formats).toEqual(['qcow2']);
  });

  it('rejects a format listed twice', () => {
    expect(messageAt(issuesOf(withFormats('[raw, raw]')), 'outputs.formats[1]')).toContain('"raw" is listed more than once');
  });
});

describe('YAML', () => {
  it('reports syntax errors with line and column', () => {
    const issues = issuesOf('name: x\nkubernetes:\n  version: 1.36.1\nbase:\n  url: a: b\n');
    expect(issues.length).toBeGreaterThan(0);
    expect(issues[0]?.message).toMatch(/^YAML syntax error at line 5, column \d+: /);
  });

  it('points an unclosed bracket or quote at the line that opened it', () => {
    const bracket = issuesOf('name: x\nbase: [unclosed\n');
    expect(bracket[0]?.message).toMatch(/^YAML syntax error at line 2, column 7: .*\(opened here, still open at line 3\)$/);
    const quote = issuesOf('name: x\nbase:\n  url: "https://e.org/b.qcow2\nkubernetes:\n  version: 1.36.1\n');
    expect(quote[0]?.message).toMatch(/^YAML syntax error at line 3, column 8: /);
  });

  it('reports duplicate keys', () => {
    const issues = issuesOf(`${MINIMAL}name: again\n`);
    expect(issues[0]?.message).toMatch(/YAML syntax error at line 6, column 1/);
  });

  it('needs a mapping at the top level', () => {
    expect(issuesOf('- name: x\n')[0]?.message).toContain('expected a mapping of settings at the top level');
  });
});

describe('paths and overrides', () => {
  it('resolves file paths from the file directory and keeps URLs as they are', () => {
    const spec = parse(
      'name: x\nbase:\n  url: images/base.qcow2\n  checksumUrl: ../sums/SHA256SUMS\nkubernetes:\n  version: 1.36.1\nprovision:\n  playbook: /opt/pb/site.yml\noutputs:\n  dir: ../out\n',
    );
    expect(spec.base.url).toBe('/projects/node-image/images/base.qcow2');
    expect(spec.base.checksumUrl).toBe('/projects/sums/SHA256SUMS');
    expect(spec.provision.playbookPath).toBe('/opt/pb/site.yml');
    expect(spec.outputs.dir).toBe('/projects/out');
    expect(parse(`${MINIMAL.replace('https://example.org/base.qcow2', 'file:///srv/base.qcow2')}`).base.url).toBe('file:///srv/base.qcow2');
  });

  it('--base replaces the base and drops the file checksumUrl and sha256; its path is relative to the working directory', () => {
    const text = `name: x\nbase:\n  url: https://e.org/b.qcow2\n  checksumUrl: https://e.org/SUMS\n  sha256: ${'a'.repeat(64)}\nkubernetes:\n  version: 1.36.1\n`;
    const spec = parse(text, { baseUrl: 'downloads/rocky.qcow2', outputDir: 'out' });
    expect(spec.base).toEqual({ url: `${CWD}/downloads/rocky.qcow2`, checksumUrl: undefined, sha256: undefined, osFamily: 'redhat' });
    expect(spec.outputs.dir).toBe(`${CWD}/out`);
    const pinned = parse(text, { baseUrl: 'https://mirror.example.org/r.qcow2', baseSha256: 'b'.repeat(64) });
    expect(pinned.base).toMatchObject({ url: 'https://mirror.example.org/r.qcow2', checksumUrl: undefined, sha256: 'b'.repeat(64) });
  });

  it('--base-sha256 alone replaces the pin and keeps the file base', () => {
    const spec = parse(`${MINIMAL}`, { baseSha256: 'c'.repeat(64), accelerator: 'tcg', firmware: 'uefi' });
    expect(spec.base).toMatchObject({ url: 'https://example.org/base.qcow2', sha256: 'c'.repeat(64) });
    expect(spec.vm).toMatchObject({ accelerator: 'tcg', firmware: 'uefi' });
  });
});

describe('SELinux on a Debian base', () => {
  it('is a warning, not an error', () => {
    const events: KibEvent[] = [];
    const text = `${MINIMAL.replace('kubernetes:', 'kubernetes:')}node:\n  selinux: enforcing\n`.replace('  url: https://example.org/base.qcow2\n', '  url: https://example.org/base.qcow2\n  osFamily: debian\n');
    const spec = parseBuildSpec(text, { configPath: CONFIG, cwd: CWD, reporter: { emit: (event) => events.push(event) } });
    expect(spec.base.osFamily).toBe('debian');
    expect(events).toEqual([{ type: 'warning', message: expect.stringContaining('node.selinux is set but base.osFamily is "debian"') as unknown }]);
  });

  it('says nothing when selinux is not set', () => {
    const events: KibEvent[] = [];
    const text = MINIMAL.replace('  url: https://example.org/base.qcow2\n', '  url: https://example.org/base.qcow2\n  osFamily: debian\n');
    parseBuildSpec(text, { configPath: CONFIG, cwd: CWD, reporter: { emit: (event) => events.push(event) } });
    expect(events).toEqual([]);
  });
});

describe('a moving base link', () => {
  it('is accepted with a warning to pin a point release', () => {
    const events: KibEvent[] = [];
    const text = MINIMAL.replace('https://example.org/base.qcow2', 'https://dl.rockylinux.org/pub/rocky/9/images/x86_64/Rocky-9-GenericCloud-Base.latest.x86_64.qcow2');
    parseBuildSpec(text, { configPath: CONFIG, cwd: CWD, reporter: { emit: (event) => events.push(event) } });
    expect(events).toEqual([{ type: 'warning', message: expect.stringContaining('looks like a moving "latest" link') as unknown }]);
  });

  it('is not suspected in a pinned file name', () => {
    const events: KibEvent[] = [];
    const text = MINIMAL.replace('https://example.org/base.qcow2', 'https://dl.rockylinux.org/pub/rocky/9.8/images/x86_64/Rocky-9-GenericCloud-Base-9.8-20260525.0.x86_64.qcow2');
    parseBuildSpec(text, { configPath: CONFIG, cwd: CWD, reporter: { emit: (event) => events.push(event) } });
    expect(events).toEqual([]);
  });
});

describe('configSha256', () => {
  it('depends on the resolved values only, not on layout, comments or defaults written out', () => {
    const a = parse(MINIMAL);
    const b = parse(`# a comment\nkubernetes: {version: "1.36.1", packages: required}\nbase: {url: "https://example.org/base.qcow2"}\nname: test-image\ndisk:\n  size: 20480M\n`);
    expect(b.configSha256).toBe(a.configSha256);
  });

  it('changes when a value changes', () => {
    expect(parse(MINIMAL.replace('1.36.1', '1.36.2')).configSha256).not.toBe(parse(MINIMAL).configSha256);
  });

  it('does not depend on the file name', () => {
    const other = parseBuildSpec(MINIMAL, { configPath: '/projects/node-image/other.yaml', cwd: CWD });
    expect(other.configSha256).toBe(parse(MINIMAL).configSha256);
  });
});

describe('node.network (the firewall\'s cluster networks)', () => {
  it('takes IPv4 and IPv6 CIDRs and PORT/PROTOCOL ports, ranges included', () => {
    const spec = parse(`${MINIMAL}node:\n  network:\n    podCidrs: [192.168.0.0/16, "fd00:10:244::/56"]\n    serviceCidrs: [10.96.0.0/12]\n    overlayPorts: [4790/udp, 179/tcp, 30000-30100/udp]\n`);
    expect(spec.node.network).toEqual({
      podCidrs: ['192.168.0.0/16', 'fd00:10:244::/56'],
      serviceCidrs: ['10.96.0.0/12'],
      overlayPorts: ['4790/udp', '179/tcp', '30000-30100/udp'],
    });
  });

  it('reports every bad CIDR and port with its path', () => {
    const issues = issuesOf(`${MINIMAL}node:\n  network:\n    podCidrs: [10.244.0.0, 300.1.1.1/8, 10.0.0.0/33]\n    overlayPorts: [4789, 8472/icmp, 70000/udp, 9-2/tcp]\n`);
    expect(messageAt(issues, 'node.network.podCidrs[0]')).toMatch(/address\/prefix/);
    expect(messageAt(issues, 'node.network.podCidrs[1]')).toMatch(/not an IPv4 address/);
    expect(messageAt(issues, 'node.network.podCidrs[2]')).toMatch(/at most \/32/);
    expect(messageAt(issues, 'node.network.overlayPorts[0]')).toMatch(/PORT\/PROTOCOL/);
    expect(messageAt(issues, 'node.network.overlayPorts[1]')).toMatch(/tcp, udp or sctp/);
    expect(messageAt(issues, 'node.network.overlayPorts[2]')).toMatch(/between 1 and 65535/);
    expect(messageAt(issues, 'node.network.overlayPorts[3]')).toMatch(/ascending/);
  });

  it('rejects unknown keys in node.network', () => {
    const issues = issuesOf(`${MINIMAL}node:\n  network:\n    podCIDR: 10.244.0.0/16\n`);
    expect(issues.map((issue) => issue.path)).toEqual(['node.network.podCIDR']);
  });
});

describe('node.selinux: enforcing', () => {
  it('is accepted with a warning that it is experimental', () => {
    const events: KibEvent[] = [];
    parseBuildSpec(`${MINIMAL}node:\n  selinux: enforcing\n`, { configPath: CONFIG, cwd: CWD, reporter: { emit: (event) => events.push(event) } });
    const warnings = events.filter((event) => event.type === 'warning').map((event) => (event as { message: string }).message);
    expect(warnings.join('\n')).toMatch(/experimental/);
    expect(warnings.join('\n')).toMatch(/spc_t/);
  });
});
