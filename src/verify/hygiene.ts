import type { CheckOf, CheckOutcome } from './check.js';
import type { ExpectedImage } from './expected.js';
import { findMacBoundLines, type DumpedFile } from './parse.js';

export type ArtifactFileType = 'file' | 'dir' | 'symlink' | 'other';

export interface ArtifactStat {
  type: ArtifactFileType;
  sizeBytes: number;
}

export interface ArtifactDirEntry {
  name: string;
  type: ArtifactFileType;
  /** Given when the directory listing carries it, which saves a stat per file. */
  sizeBytes?: number;
}

/**
 * A read-only view of the artifact's root filesystem, never booted. Paths are absolute inside the
 * image. Missing paths resolve to undefined rather than throwing; real read errors throw.
 * Symlinks are reported, not followed (`readFile` of one is undefined): offline, a link's target
 * may be absolute or point into another filesystem.
 * `openArtifactFs` (artifact-fs.ts) provides one over a disk image without mounting it.
 */
export interface ArtifactFs {
  readFile(path: string): Promise<string | undefined>;
  listDir(path: string): Promise<ArtifactDirEntry[] | undefined>;
  stat(path: string): Promise<ArtifactStat | undefined>;
}

export interface ArtifactCheckContext {
  fs: ArtifactFs;
  expected: ExpectedImage;
  /** The user the engine provisioned with (kib_build_user); it must be gone from the image. */
  buildUser?: string;
}

export type ArtifactCheck = CheckOf<ArtifactCheckContext>;

/** image-builder's Goss hygiene limit for /var/log. */
export const VAR_LOG_LIMIT_BYTES = 200 * 1024 * 1024;

/**
 * Hygiene of the artifact itself. These cannot run on a booted copy: first boot creates SSH host
 * keys, a machine-id, cloud-init instance state and logs, so the booted VM would fail them (or,
 * worse, mask what the image carries). They read the image's files offline instead.
 */
export const hygieneChecks: readonly ArtifactCheck[] = [
  fsCheck('hygiene/no-ssh-host-keys', 'no SSH host keys (each clone must generate its own)', async ({ fs }) => {
    const keys = ((await fs.listDir('/etc/ssh')) ?? []).filter((entry) => /^ssh_host_.*key(\.pub)?$/.test(entry.name));
    return keys.length === 0 ? pass('no ssh_host_* files') : fail(`found ${keys.map((k) => `/etc/ssh/${k.name}`).join(', ')}`);
  }),
  fsCheck('hygiene/machine-id-empty', '/etc/machine-id is empty (each clone gets its own)', async ({ fs }) => {
    const content = await fs.readFile('/etc/machine-id');
    if (content === undefined) return fail('/etc/machine-id is missing; systemd expects an empty file');
    const value = content.trim();
    return value === '' || value === 'uninitialized' ? pass(value === '' ? 'empty' : 'uninitialized') : fail(`contains ${value}`);
  }),
  fsCheck('hygiene/no-cloud-init-instance', 'no cloud-init instance state (cloud-init runs again on first boot)', async ({ fs }) => {
    const found: string[] = [];
    for (const path of ['/var/lib/cloud/instance', '/var/lib/cloud/data/instance-id']) if ((await fs.stat(path)) !== undefined) found.push(path);
    const instances = (await fs.listDir('/var/lib/cloud/instances')) ?? [];
    found.push(...instances.map((entry) => `/var/lib/cloud/instances/${entry.name}`));
    return found.length === 0 ? pass('no instance state') : fail(`found ${found.join(', ')}`);
  }),
  fsCheck('hygiene/cloud-init-enabled', 'cloud-init is not disabled', async ({ fs }) =>
    (await fs.stat('/etc/cloud/cloud-init.disabled')) === undefined ? pass('no /etc/cloud/cloud-init.disabled') : fail('/etc/cloud/cloud-init.disabled exists'),
  ),
  fsCheck('hygiene/no-cloud-init-logs', "no cloud-init logs from the build's boot", async ({ fs }) => {
    const found: string[] = [];
    for (const path of ['/var/log/cloud-init.log', '/var/log/cloud-init-output.log']) {
      const stat = await fs.stat(path);
      if (stat !== undefined && stat.sizeBytes > 0) found.push(`${path} (${stat.sizeBytes} bytes)`);
    }
    return found.length === 0 ? pass('none') : fail(found.join(', '));
  }),
  fsCheck('hygiene/no-core-dumps', 'no core dumps', async ({ fs }) => {
    const found: string[] = [];
    for (const dir of ['/var/crash', '/var/lib/systemd/coredump']) {
      for (const entry of (await fs.listDir(dir)) ?? []) found.push(`${dir}/${entry.name}`);
    }
    for (const dir of ['/tmp', '/var/tmp']) {
      for (const entry of (await fs.listDir(dir)) ?? []) if (/^core(\.|$)/.test(entry.name)) found.push(`${dir}/${entry.name}`);
    }
    return found.length === 0 ? pass('none') : fail(found.join(', '));
  }),
  fsCheck('hygiene/tmp-empty', '/tmp and /var/tmp are empty', async ({ fs }) => {
    const found: string[] = [];
    for (const dir of ['/tmp', '/var/tmp']) for (const entry of (await fs.listDir(dir)) ?? []) found.push(`${dir}/${entry.name}`);
    return found.length === 0 ? pass('empty') : fail(`left behind: ${found.slice(0, 10).join(', ')}${found.length > 10 ? ` and ${found.length - 10} more` : ''}`);
  }),
  fsCheck('hygiene/var-log-size', `/var/log holds at most ${VAR_LOG_LIMIT_BYTES / 1024 / 1024} MiB`, async ({ fs }) => {
    const bytes = await treeSize(fs, '/var/log');
    const mib = (bytes / 1024 / 1024).toFixed(1);
    return bytes <= VAR_LOG_LIMIT_BYTES ? pass(`${mib} MiB`) : fail(`${mib} MiB`);
  }),
  fsCheck('hygiene/no-authorized-keys', 'no authorized_keys from the build', async ({ fs }) => {
    const found: string[] = [];
    const homes = ['/root', ...((await fs.listDir('/home')) ?? []).filter((e) => e.type === 'dir').map((e) => `/home/${e.name}`)];
    for (const home of homes) {
      const path = `${home}/.ssh/authorized_keys`;
      const stat = await fs.stat(path);
      if (stat !== undefined && stat.sizeBytes > 0) found.push(path);
    }
    return found.length === 0 ? pass(`checked ${homes.join(', ')}`) : fail(found.join(', '));
  }),
  fsCheck('hygiene/no-shell-history', 'no shell history from the build', async ({ fs }) => {
    const found: string[] = [];
    const homes = ['/root', ...((await fs.listDir('/home')) ?? []).filter((e) => e.type === 'dir').map((e) => `/home/${e.name}`)];
    for (const home of homes) {
      const stat = await fs.stat(`${home}/.bash_history`);
      if (stat !== undefined && stat.sizeBytes > 0) found.push(`${home}/.bash_history`);
    }
    return found.length === 0 ? pass('none') : fail(found.join(', '));
  }),
  fsCheck('hygiene/no-build-user', 'the build user is gone', async ({ fs, buildUser }) => {
    if (buildUser === undefined) return { skip: 'the build user is not known (pass it from the build manifest or log)' };
    const found = await findBuildUserTraces(fs, buildUser);
    return found.length === 0 ? pass(`${buildUser} is gone`) : fail(found.join(', '));
  }),
  fsCheck('hygiene/hostname-generic', 'no hostname from the build', async ({ fs }) => {
    const name = ((await fs.readFile('/etc/hostname')) ?? '').trim();
    return name === '' || /^localhost(\.localdomain|\.local)?$/.test(name) ? pass(name === '' ? 'empty' : name) : fail(`/etc/hostname is ${name}`);
  }),
  fsCheck('hygiene/no-build-leftovers', 'no kib working files or build proxies', async ({ fs }) => {
    const found: string[] = [];
    for (const path of ['/var/lib/kib', '/etc/systemd/system/containerd.service.d/http-proxy.conf']) if ((await fs.stat(path)) !== undefined) found.push(path);
    return found.length === 0 ? pass('none') : fail(found.join(', '));
  }),
  {
    id: 'network/artifact-no-mac-bound-config',
    title: "the image's network configuration is bound to no MAC address or connection UUID",
    group: 'network',
    async run({ fs }) {
      const files = await readNetworkConfig(fs);
      const bound = findMacBoundLines(files);
      return bound.length === 0 ? pass(`${files.length} file(s) checked`) : fail(bound.map((b) => `${b.path}:${b.line}: ${b.text}`).join('; '));
    },
  },
];

const NETWORK_CONFIG_DIRS: readonly { dir: string; match: RegExp }[] = [
  { dir: '/etc/NetworkManager/system-connections', match: /./ },
  { dir: '/etc/sysconfig/network-scripts', match: /^ifcfg-/ },
  { dir: '/etc/systemd/network', match: /\.(network|link|netdev)$/ },
  { dir: '/etc/netplan', match: /\.ya?ml$/ },
];

/**
 * Where a disk still shows the build user: its account lines (passwd, shadow, group, gshadow), its
 * home, a sudoers rule naming it, cloud-init instance state (whose user-data carries its key).
 * Empty for a sealed artifact, and for every stage layer (the build user is taken off the disk
 * before a layer is frozen).
 */
export async function findBuildUserTraces(fs: ArtifactFs, user: string): Promise<string[]> {
  const found: string[] = [];
  for (const path of ['/etc/passwd', '/etc/shadow', '/etc/group', '/etc/gshadow']) {
    const text = (await fs.readFile(path)) ?? '';
    if (text.split('\n').some((line) => line.startsWith(`${user}:`))) found.push(`${path} has ${user}`);
  }
  for (const path of [`/home/${user}`, `/etc/sudoers.d/${user}`]) if ((await fs.stat(path)) !== undefined) found.push(path);
  const cloudInitRules = await fs.readFile('/etc/sudoers.d/90-cloud-init-users');
  if (cloudInitRules !== undefined && new RegExp(`^${user}\\s`, 'm').test(cloudInitRules)) found.push(`/etc/sudoers.d/90-cloud-init-users names ${user}`);
  return found;
}

async function readNetworkConfig(fs: ArtifactFs): Promise<DumpedFile[]> {
  const files: DumpedFile[] = [];
  for (const { dir, match } of NETWORK_CONFIG_DIRS) {
    for (const entry of (await fs.listDir(dir)) ?? []) {
      if (entry.type !== 'file' || !match.test(entry.name)) continue;
      const path = `${dir}/${entry.name}`;
      const content = await fs.readFile(path);
      if (content !== undefined) files.push({ path, content });
    }
  }
  return files;
}

/** Sum of regular-file sizes below a directory (what `du` would count, minus block rounding). */
export async function treeSize(fs: ArtifactFs, dir: string): Promise<number> {
  let total = 0;
  for (const entry of (await fs.listDir(dir)) ?? []) {
    const path = `${dir}/${entry.name}`;
    if (entry.type === 'dir') total += await treeSize(fs, path);
    else if (entry.type === 'file') total += entry.sizeBytes ?? (await fs.stat(path))?.sizeBytes ?? 0;
  }
  return total;
}

function fsCheck(id: string, title: string, run: (ctx: ArtifactCheckContext) => Promise<CheckOutcome>): ArtifactCheck {
  return { id, title, group: 'hygiene', run };
}

function pass(detail: string): CheckOutcome {
  return { ok: true, detail };
}

function fail(detail: string): CheckOutcome {
  return { ok: false, detail };
}
