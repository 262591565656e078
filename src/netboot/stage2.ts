import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, realpath, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { KibError, MissingToolError } from '../core/errors.js';
import { findTool, run } from '../process/index.js';
import { silentReporter, type Reporter } from '../report/events.js';
import { renderNewcCpio, type CpioEntry } from './cpio.js';
import { STAGE2_INIT, UDHCPC_SCRIPT } from './stage2-init.js';

/**
 * stage2: what a netbooting Machine runs to install its disk. Built on the host from Debian
 * packages with no mounts and no root: the Debian kernel (`apt-get download` + `dpkg-deb -x`,
 * never installed on the host), and an initramfs written here as a newc cpio holding
 * busybox-static, the virtio modules, GNU dd and sha256sum, zstd (with their shared libraries,
 * copied from the host's Debian packages), and /init (stage2-init.ts). Cached under
 * `<cache>/netboot/stage2-<key>/` where the key is the sha256 of the recipe: the kernel package
 * and version, every file copied in (by content), the module list and the scripts.
 */

/** Bump when the way the recipe becomes files changes outside the recipe itself. */
export const STAGE2_RECIPE_VERSION = 1;

/**
 * Load order matters: Debian builds these as modules, and each needs the ones before it
 * (measured; see docs/netboot.md). virtio_scsi (with scsi_mod, sd_mod) and nvme cover other disks
 * a VM may present; a missing module is skipped by /init.
 */
export const STAGE2_MODULES = [
  'virtio_ring',
  'virtio',
  'virtio_pci_modern_dev',
  'virtio_pci_legacy_dev',
  'virtio_pci',
  'virtio_blk',
  'failover',
  'net_failover',
  'virtio_net',
  'scsi_common',
  'scsi_mod',
  'sd_mod',
  'virtio_scsi',
  'nvme-common',
  'nvme-core',
  'nvme',
] as const;

/** GNU tools stage2 uses instead of busybox's (O_DIRECT, count_bytes; sha256 at 25 instead of 15 MB/s). */
const HOST_TOOLS = ['/usr/bin/dd', '/usr/bin/sha256sum', '/usr/bin/zstd'] as const;
const BUSYBOX = '/usr/bin/busybox';
const KERNEL_META_PACKAGE = 'linux-image-amd64';

export interface Stage2Files {
  dir: string;
  kernelPath: string;
  initrdPath: string;
  /** The recipe key (sha256 hex). */
  key: string;
  kernelPackage: string;
  kernelVersion: string;
}

export interface Stage2Recipe {
  recipeVersion: number;
  kernelPackage: string;
  kernelVersion: string;
  modules: readonly string[];
  init: string;
  udhcpcScript: string;
  files: { path: string; sha256: string }[];
}

const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

/** Resolves `linux-image-amd64` to the versioned kernel package apt would install (no download). */
export async function resolveKernelPackage(signal?: AbortSignal): Promise<{ name: string; version: string }> {
  const opts = { timeoutMs: 60_000, ...(signal === undefined ? {} : { signal }) };
  const depends = await run('apt-cache', ['depends', KERNEL_META_PACKAGE], opts);
  const name = /Depends:\s*(linux-image-[0-9][^\s]*-amd64)/.exec(depends.stdout)?.[1];
  if (name === undefined) throw new KibError('STAGE2_KERNEL', `apt-cache knows no kernel package behind ${KERNEL_META_PACKAGE}`, { hint: 'Run apt-get update.' });
  const policy = await run('apt-cache', ['policy', name], opts);
  const version = /Candidate:\s*(\S+)/.exec(policy.stdout)?.[1];
  if (version === undefined || version === '(none)') throw new KibError('STAGE2_KERNEL', `apt-cache has no candidate version of ${name}`);
  return { name, version };
}

/** The shared libraries (and the loader) a dynamically linked binary needs, from `ldd`. */
export function parseLddOutput(text: string): string[] {
  const paths = new Set<string>();
  for (const line of text.split('\n')) {
    const arrow = /=>\s*(\/\S+)/.exec(line);
    const bare = /^\s*(\/\S+)\s+\(/.exec(line);
    const path = arrow?.[1] ?? bare?.[1];
    if (path !== undefined) paths.add(path);
  }
  return [...paths].sort();
}

async function hostFiles(signal?: AbortSignal): Promise<string[]> {
  const files = new Set<string>([BUSYBOX, ...HOST_TOOLS]);
  for (const tool of HOST_TOOLS) {
    const ldd = await run('ldd', [tool], { timeoutMs: 30_000, ...(signal === undefined ? {} : { signal }) });
    for (const lib of parseLddOutput(ldd.stdout)) files.add(lib);
  }
  return [...files].sort();
}

export interface BuildStage2Options {
  cacheDir: string;
  signal?: AbortSignal;
  reporter?: Reporter;
}

/** Builds stage2 or returns the cached build of the same recipe. */
export async function ensureStage2(options: BuildStage2Options): Promise<Stage2Files> {
  const reporter = options.reporter ?? silentReporter;
  const log = (line: string): void => reporter.emit({ type: 'log', source: 'netboot', line });
  const missing = [
    { command: 'apt-get', purpose: 'download the stage2 kernel package', packageName: 'apt' },
    { command: 'dpkg-deb', purpose: 'unpack the stage2 kernel package', packageName: 'dpkg' },
    { command: 'ldd', purpose: 'find the libraries stage2 tools need', packageName: 'libc-bin' },
    { command: 'zstd', purpose: 'decompress the image in stage2', packageName: 'zstd' },
  ].filter((need) => findTool(need.command) === undefined);
  if (!existsSync(BUSYBOX)) missing.push({ command: 'busybox', purpose: 'the stage2 userland (static)', packageName: 'busybox-static' });
  if (missing.length > 0) throw new MissingToolError(missing);

  const kernel = await resolveKernelPackage(options.signal);
  const files = await hostFiles(options.signal);
  const fileContents = new Map<string, Buffer>();
  for (const file of files) fileContents.set(file, await readFile(await realpath(file)));
  const recipe: Stage2Recipe = {
    recipeVersion: STAGE2_RECIPE_VERSION,
    kernelPackage: kernel.name,
    kernelVersion: kernel.version,
    modules: STAGE2_MODULES,
    init: sha256(STAGE2_INIT),
    udhcpcScript: sha256(UDHCPC_SCRIPT),
    files: files.map((path) => ({ path, sha256: sha256(fileContents.get(path)!) })),
  };
  const key = sha256(JSON.stringify(recipe));
  const root = join(options.cacheDir, 'netboot');
  const dir = join(root, `stage2-${key.slice(0, 16)}`);
  const result: Stage2Files = { dir, kernelPath: join(dir, 'vmlinuz'), initrdPath: join(dir, 'initrd'), key, kernelPackage: kernel.name, kernelVersion: kernel.version };
  if (existsSync(join(dir, 'recipe.json'))) return result;

  log(`building stage2 (${kernel.name} ${kernel.version})`);
  await mkdir(root, { recursive: true });
  const work = await mkdtemp(join(root, '.stage2-work-'));
  try {
    const opts = { cwd: work, timeoutMs: 10 * 60_000, ...(options.signal === undefined ? {} : { signal: options.signal }) };
    await run('apt-get', ['download', `${kernel.name}=${kernel.version}`], opts);
    const deb = (await readdir(work)).find((name) => name.endsWith('.deb'));
    if (deb === undefined) throw new KibError('STAGE2_KERNEL', `apt-get download ${kernel.name} left no .deb`);
    await run('dpkg-deb', ['-x', deb, 'root'], opts);
    const modulesRoot = join(work, 'root', 'lib', 'modules');
    const [release] = await readdir(modulesRoot);
    if (release === undefined) throw new KibError('STAGE2_KERNEL', `${deb} holds no modules`);
    const moduleFiles = await indexModules(join(modulesRoot, release));

    const entries: CpioEntry[] = [];
    const dirs = new Set<string>();
    const addDir = (path: string): void => {
      const parts = path.split('/').filter((part) => part !== '');
      for (let i = 1; i <= parts.length; i += 1) dirs.add(parts.slice(0, i).join('/'));
    };
    for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'dev', 'proc', 'sys', 'tmp', 'run', 'etc/kib', 'lib/modules', 'usr/share/udhcpc']) addDir(d);
    entries.push({ type: 'char', path: 'dev/console', major: 5, minor: 1 });
    entries.push({ type: 'char', path: 'dev/null', major: 1, minor: 3, mode: 0o666 });
    entries.push({ type: 'file', path: 'init', mode: 0o755, data: Buffer.from(STAGE2_INIT) });
    entries.push({ type: 'file', path: 'etc/kib/udhcpc.script', mode: 0o755, data: Buffer.from(UDHCPC_SCRIPT) });
    entries.push({ type: 'file', path: 'bin/busybox', mode: 0o755, data: fileContents.get(BUSYBOX)! });
    for (const file of files) {
      if (file === BUSYBOX) continue;
      const path = file.replace(/^\/+/, '');
      addDir(path.split('/').slice(0, -1).join('/'));
      entries.push({ type: 'file', path, mode: 0o755, data: fileContents.get(file)! });
    }
    // Debian's merged /usr: the loader is looked up as /lib64/ld-linux-x86-64.so.2.
    const loaded: string[] = [];
    for (const module of STAGE2_MODULES) {
      const source = moduleFiles.get(module.replaceAll('-', '_'));
      if (source === undefined) continue;
      if (!source.endsWith('.ko')) throw new KibError('STAGE2_MODULE', `module ${module} is compressed (${basename(source)}); stage2 loads plain .ko files with busybox insmod`);
      entries.push({ type: 'file', path: `lib/modules/${module}.ko`, data: await readFile(source) });
      loaded.push(module);
    }
    for (const module of ['virtio_pci', 'virtio_blk', 'virtio_net']) {
      if (!loaded.includes(module)) throw new KibError('STAGE2_MODULE', `${kernel.name} has no ${module} module`);
    }
    entries.push({ type: 'file', path: 'etc/kib/modules', data: Buffer.from(`${loaded.join('\n')}\n`) });
    for (const d of dirs) entries.push({ type: 'dir', path: d });

    const staging = join(work, 'out');
    await mkdir(staging);
    const vmlinuz = (await readdir(join(work, 'root', 'boot'))).find((name) => name.startsWith('vmlinuz-'));
    if (vmlinuz === undefined) throw new KibError('STAGE2_KERNEL', `${deb} holds no vmlinuz`);
    await writeFile(join(staging, 'vmlinuz'), await readFile(join(work, 'root', 'boot', vmlinuz)));
    await writeFile(join(staging, 'initrd'), gzipSync(renderNewcCpio(entries), { level: 9 }));
    await writeFile(join(staging, 'recipe.json'), `${JSON.stringify({ ...recipe, key, release }, null, 2)}\n`);
    try {
      await rename(staging, dir);
    } catch (error) {
      // Another build of the same recipe finished first: theirs is as good.
      if (!existsSync(join(dir, 'recipe.json'))) throw error;
    }
    log(`stage2 built: ${dir}`);
    return result;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Module name (with `_`) → its file, over the whole modules tree of one kernel release. */
async function indexModules(dir: string): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const walk = async (current: string): Promise<void> => {
    for (const entry of await readdir(current, { withFileTypes: true })) {
      const path = join(current, entry.name);
      if (entry.isDirectory()) await walk(path);
      else {
        const match = /^(.+)\.ko(\.(xz|zst|gz))?$/.exec(entry.name);
        if (match?.[1] !== undefined) found.set(match[1].replaceAll('-', '_'), path);
      }
    }
  };
  await walk(dir);
  return found;
}

/** A unique name in a directory, for temporary files next to their final place. */
export function temporaryName(dir: string, prefix: string): string {
  return join(dir, `.${prefix}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}
