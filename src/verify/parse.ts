/**
 * Pure parsers for the outputs checks read. Each takes the text a tool prints and returns data;
 * none of them runs anything, so unit tests feed them recorded outputs.
 */

export interface ServiceState {
  loadState: string;
  activeState: string;
  subState: string;
  unitFileState: string;
}

/** UnitFileState values that mean "starts at boot". */
export const SERVICE_ENABLED_STATES: ReadonlySet<string> = new Set(['enabled', 'enabled-runtime', 'alias', 'generated']);

/** `systemctl show -p …` prints Key=value lines in its own order. */
export function parseServiceState(text: string): ServiceState {
  const values = parseKeyValueLines(text);
  return {
    loadState: values['LoadState'] ?? '',
    activeState: values['ActiveState'] ?? '',
    subState: values['SubState'] ?? '',
    unitFileState: values['UnitFileState'] ?? '',
  };
}

function parseKeyValueLines(text: string): Record<string, string> {
  const values: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const at = line.indexOf('=');
    if (at > 0) values[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return values;
}

/**
 * `systemctl show -p Id -p … UNIT…` prints one block of KEY=value lines per unit, blocks separated
 * by a blank line. Returns the blocks keyed by their Id= (units without one are dropped).
 */
export function parseUnitProperties(text: string): Map<string, Record<string, string>> {
  const units = new Map<string, Record<string, string>>();
  for (const block of text.split(/\n\s*\n/)) {
    const values = parseKeyValueLines(block);
    const id = values['Id'];
    if (id !== undefined && id !== '') units.set(id, values);
  }
  return units;
}

export interface DumpedFile {
  path: string;
  content: string;
}

/** A shell loop that prints every existing file matching the globs, each after a `==> path` line. */
export function dumpFilesCommand(globs: readonly string[]): string {
  return `for f in ${globs.join(' ')}; do [ -f "$f" ] && { echo "==> $f"; cat "$f"; echo; }; done; true`;
}

/** Splits the output of `dumpFilesCommand` back into files. */
export function parseFileDump(text: string): DumpedFile[] {
  const files: DumpedFile[] = [];
  let current: { path: string; lines: string[] } | undefined;
  for (const line of text.split('\n')) {
    const header = /^==> (.+)$/.exec(line);
    if (header !== null) {
      if (current !== undefined) files.push({ path: current.path, content: current.lines.join('\n') });
      current = { path: header[1] as string, lines: [] };
    } else if (current !== undefined) {
      current.lines.push(line);
    }
  }
  if (current !== undefined) files.push({ path: current.path, content: current.lines.join('\n') });
  return files;
}

/** Module names per /etc/modules-load.d file (comments are `#` or `;`). */
export function parseModulesLoad(text: string): { path: string; modules: string[] }[] {
  return parseFileDump(text).map((file) => ({
    path: file.path,
    modules: file.content
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#') && !line.startsWith(';')),
  }));
}

export interface CloudInitStatus {
  /** `done`, `error`, `running`, `not started`/`not run`, `disabled`; `unknown` when absent. */
  status: string;
  /** cloud-init ≥ 23.4: `done`, `degraded done`, `error - done`…; undefined on older releases. */
  extendedStatus: string | undefined;
  detail: string;
}

/** `cloud-init status --long` (22.x prints status/time/detail; 23.4+ adds extended_status). */
export function parseCloudInitStatus(text: string): CloudInitStatus {
  let status = 'unknown';
  let extendedStatus: string | undefined;
  const detail: string[] = [];
  let inDetail = false;
  for (const line of text.split('\n')) {
    const status_ = /^status:\s*(.+)$/.exec(line);
    const extended = /^extended_status:\s*(.+)$/.exec(line);
    const detailHead = /^detail:\s*(.*)$/.exec(line);
    if (status_ !== null) {
      status = (status_[1] as string).trim();
      inDetail = false;
    } else if (extended !== null) {
      extendedStatus = (extended[1] as string).trim();
      inDetail = false;
    } else if (detailHead !== null) {
      inDetail = true;
      if ((detailHead[1] as string).trim() !== '') detail.push((detailHead[1] as string).trim());
    } else if (inDetail && /^\S+:/.test(line)) {
      inDetail = false;
    } else if (inDetail && line.trim() !== '') {
      detail.push(line.trim());
    }
  }
  return { status, extendedStatus, detail: detail.join(' ') };
}

/**
 * Datasources ds-identify searched: the `DSLIST=` line of /run/cloud-init/ds-identify.log.
 * It is the effective list, after ds-identify's own reading of /etc/cloud (which, for one,
 * ignores a last line without a newline). Undefined when the log has no such line.
 */
export function parseDsIdentifyList(log: string): string[] | undefined {
  let found: string[] | undefined;
  for (const line of log.split('\n')) {
    const match = /^DSLIST=(.*)$/.exec(line.trim());
    if (match !== null) found = (match[1] as string).split(/[\s,]+/).filter((ds) => ds !== '');
  }
  return found;
}

/**
 * Flat view of a TOML document as `containerd config dump` prints it: `table.path` → key → raw
 * value. Only tables and `key = value` lines are understood, which is all the dump contains
 * that we need; quotes in table headers are dropped so 1.x ("…") and 2.x ('…') dumps compare equal.
 */
export function parseTomlTables(text: string): Map<string, Map<string, string>> {
  const tables = new Map<string, Map<string, string>>();
  let current = '';
  tables.set(current, new Map());
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const header = /^\[\[?(.+?)\]\]?$/.exec(line);
    if (header !== null) {
      current = normalizeTomlKey(header[1] as string);
      if (!tables.has(current)) tables.set(current, new Map());
      continue;
    }
    const pair = /^("[^"]*"|'[^']*'|[A-Za-z0-9_.-]+)\s*=\s*(.*)$/.exec(line);
    if (pair === null) continue;
    const key = normalizeTomlKey(pair[1] as string);
    // Dotted keys (a.b = 1) belong to a sub-table of the current one.
    const dot = key.lastIndexOf('.');
    const table = dot < 0 ? current : current === '' ? key.slice(0, dot) : `${current}.${key.slice(0, dot)}`;
    const leaf = dot < 0 ? key : key.slice(dot + 1);
    if (!tables.has(table)) tables.set(table, new Map());
    tables.get(table)?.set(leaf, (pair[2] as string).trim());
  }
  return tables;
}

function normalizeTomlKey(key: string): string {
  // Splits on dots outside quotes, then drops the quotes.
  const parts: string[] = [];
  let part = '';
  let quote: string | undefined;
  for (const ch of key.trim()) {
    if (quote !== undefined) {
      if (ch === quote) quote = undefined;
      else part += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
    } else if (ch === '.') {
      parts.push(part.trim());
      part = '';
    } else {
      part += ch;
    }
  }
  parts.push(part.trim());
  return parts.join('.');
}

/** The string inside a TOML basic or literal string value; undefined for other values. */
export function tomlString(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const match = /^"((?:[^"\\]|\\.)*)"|^'([^']*)'/.exec(value);
  if (match === null) return undefined;
  return match[1] !== undefined ? match[1].replace(/\\(.)/g, '$1') : match[2];
}

export interface ContainerdCriConfig {
  /** The pause image the CRI plugin uses for pod sandboxes. */
  sandboxImage: string | undefined;
  /** Where it was found, for messages. */
  sandboxKey: string | undefined;
  /** `SystemdCgroup` of the runc runtime, undefined when absent. */
  systemdCgroup: boolean | undefined;
}

const SANDBOX_KEYS: readonly { table: string; key: string }[] = [
  // containerd 2.x (config version 3): the image service pins the sandbox image.
  { table: 'plugins.io.containerd.cri.v1.images.pinned_images', key: 'sandbox' },
  // containerd 1.x (config version 2): a key of the CRI plugin.
  { table: 'plugins.io.containerd.grpc.v1.cri', key: 'sandbox_image' },
];

const RUNC_OPTION_TABLES = [
  'plugins.io.containerd.cri.v1.runtime.containerd.runtimes.runc.options',
  'plugins.io.containerd.grpc.v1.cri.containerd.runtimes.runc.options',
];

/** Reads the sandbox image and the runc cgroup driver from `containerd config dump`. */
export function parseContainerdConfig(text: string): ContainerdCriConfig {
  const tables = parseTomlTables(text);
  let sandboxImage: string | undefined;
  let sandboxKey: string | undefined;
  for (const { table, key } of SANDBOX_KEYS) {
    const value = tomlString(tables.get(table)?.get(key));
    if (value !== undefined && value !== '') {
      sandboxImage = value;
      sandboxKey = `${table}.${key}`;
      break;
    }
  }
  let systemdCgroup: boolean | undefined;
  for (const table of RUNC_OPTION_TABLES) {
    const value = tables.get(table)?.get('SystemdCgroup');
    if (value !== undefined) {
      systemdCgroup = value === 'true';
      break;
    }
  }
  return { sandboxImage, sandboxKey, systemdCgroup };
}

/** Image references (repo:tag) from `crictl images -o json`; untagged images are left out. */
export function parseCrictlImages(text: string): string[] {
  const parsed = JSON.parse(text) as unknown;
  const images = (parsed as { images?: unknown }).images;
  if (!Array.isArray(images)) throw new Error('crictl images -o json: no "images" array');
  const refs: string[] = [];
  for (const image of images as { repoTags?: unknown }[]) {
    if (Array.isArray(image.repoTags)) for (const tag of image.repoTags) if (typeof tag === 'string') refs.push(tag);
  }
  return refs;
}

/** `kubeadm config images list` prints one reference per line; anything else is noise. */
export function parseImageList(text: string): string[] {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => /^[a-z0-9.-]+(:\d+)?\/[^\s]+:[^\s]+$/.test(line));
}

/** The pause image among kubeadm's images. */
export function pauseImageOf(images: readonly string[]): string | undefined {
  return images.find((ref) => /\/pause:[^/]+$/.test(ref));
}

export interface SetDifference {
  missing: string[];
  extra: string[];
}

export function compareSets(expected: readonly string[], actual: readonly string[]): SetDifference {
  const want = new Set(expected);
  const have = new Set(actual);
  return {
    missing: [...want].filter((ref) => !have.has(ref)).sort(),
    extra: [...have].filter((ref) => !want.has(ref)).sort(),
  };
}

export interface MacBoundLine {
  path: string;
  line: number;
  text: string;
}

/**
 * Lines in network configuration that tie it to one machine: a MAC address (the NIC of a VM that
 * KubeVirt restarts may get another) or a connection UUID copied into every clone.
 * Covers NetworkManager keyfiles, ifcfg files, systemd-networkd .network/.link and netplan.
 */
export function findMacBoundLines(files: readonly DumpedFile[]): MacBoundLine[] {
  const found: MacBoundLine[] = [];
  for (const file of files) {
    const pattern = macBoundPattern(file.path);
    if (pattern === undefined) continue;
    file.content.split('\n').forEach((text, index) => {
      const trimmed = text.trim();
      if (trimmed.startsWith('#') || trimmed.startsWith(';')) return;
      if (pattern.test(trimmed)) found.push({ path: file.path, line: index + 1, text: trimmed });
    });
  }
  return found;
}

function macBoundPattern(path: string): RegExp | undefined {
  if (path.includes('/NetworkManager/system-connections/')) return /^(mac-address|cloned-mac-address|uuid)\s*=/;
  if (/\/ifcfg-[^/]+$/.test(path)) return /^(HWADDR|MACADDR|UUID)\s*=/;
  if (/\/systemd\/network\/[^/]+\.(network|link|netdev)$/.test(path)) return /^(MACAddress|PermanentMACAddress)\s*=/;
  if (/\/netplan\/[^/]+\.ya?ml$/.test(path)) return /^macaddress\s*:/;
  return undefined;
}

/** Globs of every file `findMacBoundLines` understands. */
export const NETWORK_CONFIG_GLOBS: readonly string[] = [
  '/etc/NetworkManager/system-connections/*',
  '/etc/sysconfig/network-scripts/ifcfg-*',
  '/etc/systemd/network/*.network',
  '/etc/systemd/network/*.link',
  '/etc/systemd/network/*.netdev',
  '/etc/netplan/*.yaml',
  '/etc/netplan/*.yml',
];

/** Files cloud-init renders on each new instance; on a booted copy they are this boot's, not the image's. */
export function isCloudInitNetworkFile(path: string): boolean {
  return /cloud-init/.test(path.slice(path.lastIndexOf('/') + 1));
}

export interface RootDiskLayout {
  rootSource: string;
  diskBytes: number;
  partitionBytes: number;
  /** Disk bytes not covered by any partition (room growpart did not take). */
  unpartitionedBytes: number;
  filesystemBytes: number;
}

/**
 * Output of the disk-growth probe: `root=<dev>`, `disk=<dev>`, then `lsblk -bnro NAME,SIZE,TYPE`
 * lines of the disk, then `fs=<bytes>` from df.
 */
export function parseRootDiskLayout(text: string): RootDiskLayout {
  const lines = text.split('\n').map((line) => line.trim());
  const value = (key: string): string | undefined => lines.find((l) => l.startsWith(`${key}=`))?.slice(key.length + 1);
  const rootSource = value('root') ?? '';
  const fs = Number(value('fs'));
  let diskBytes = Number.NaN;
  let partitionsBytes = 0;
  let partitionBytes = Number.NaN;
  const rootName = rootSource.slice(rootSource.lastIndexOf('/') + 1);
  for (const line of lines) {
    const match = /^(\S+) (\d+) (disk|part)$/.exec(line);
    if (match === null) continue;
    const size = Number(match[2]);
    if (match[3] === 'disk') diskBytes = size;
    else {
      partitionsBytes += size;
      if (match[1] === rootName) partitionBytes = size;
    }
  }
  if (!Number.isFinite(diskBytes) || !Number.isFinite(fs) || rootSource === '') {
    throw new Error(`could not read the root disk layout from ${JSON.stringify(text.slice(0, 200))}`);
  }
  // A root filesystem on the whole disk (no partition table) counts as its own partition.
  if (!Number.isFinite(partitionBytes)) partitionBytes = partitionsBytes === 0 ? diskBytes : Number.NaN;
  if (!Number.isFinite(partitionBytes)) throw new Error(`root device ${rootSource} is not a partition of the disk`);
  return {
    rootSource,
    diskBytes,
    partitionBytes,
    unpartitionedBytes: Math.max(0, diskBytes - (partitionsBytes === 0 ? diskBytes : partitionsBytes)),
    filesystemBytes: fs,
  };
}
