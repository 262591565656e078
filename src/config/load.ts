import { access, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMap, isScalar, LineCounter, parseDocument } from 'yaml';
import { ConfigError, type ConfigIssue } from '../core/errors.js';
import type { Reporter } from '../report/events.js';
import { type BuildOverrides, type BuildSpec, withConfigSha256 } from './build-spec.js';
import { DEFAULT_IMAGE_YAML } from './default-image.js';
import { issuesFromZod } from './issues.js';
import { ACCELERATORS, FIRMWARES, imageConfigSchema, locationProblem, sha256Problem } from './schema.js';

export interface LoadBuildSpecOptions {
  /** image.yaml to load, relative to cwd. Without it: ./image.yaml if present, else the embedded default. */
  configPath?: string | undefined;
  overrides?: BuildOverrides | undefined;
  /** Working directory for configPath and overrides; process.cwd() by default. */
  cwd?: string | undefined;
  /** Receives warnings (for example: node.selinux set for a Debian base). */
  reporter?: Reporter | undefined;
}

export interface ParseBuildSpecContext {
  /** Absolute path of the file the text came from; undefined for the embedded default. */
  configPath: string | undefined;
  cwd: string;
  overrides?: BuildOverrides | undefined;
  reporter?: Reporter | undefined;
}

/** The directory of the kib package (holds playbook/); the embedded default's paths resolve from here. */
export function kibPackageRoot(): string {
  // src/config/load.ts and dist/config/load.js are both two levels below the package root.
  return resolve(fileURLToPath(new URL('../../', import.meta.url)));
}

/**
 * Loads, validates and resolves the build definition. Every problem in the file and in the
 * overrides is reported at once in one ConfigError. The lock file is not read here: callers
 * apply it with readLock + applyLock (and `kib lock --update` deliberately does not).
 */
export async function loadBuildSpec(options: LoadBuildSpecOptions = {}): Promise<BuildSpec> {
  const cwd = resolve(options.cwd ?? process.cwd());
  let configPath: string | undefined;
  let text: string;
  if (options.configPath !== undefined) {
    configPath = resolve(cwd, options.configPath);
    text = await readConfigText(configPath);
  } else {
    const candidate = join(cwd, 'image.yaml');
    if (await exists(candidate)) {
      configPath = candidate;
      text = await readConfigText(candidate);
    } else {
      text = DEFAULT_IMAGE_YAML;
    }
  }

  return parseBuildSpec(text, { configPath, cwd, overrides: options.overrides, reporter: options.reporter });
}

/** Validates and resolves image.yaml text. Pure apart from reading the home directory for "~/" paths. */
export function parseBuildSpec(text: string, context: ParseBuildSpecContext): BuildSpec {
  const file = context.configPath;
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((error) => {
        const firstLine = error.message.split('\n')[0] ?? error.message;
        const noticed = lineCounter.linePos(error.pos[0]);
        // An unclosed bracket or quote is noticed where the file ends; point at where it was opened.
        const opened = /flow (sequence|mapping)|quote/i.test(firstLine) ? unclosedOpening(text, error.pos[0]) : undefined;
        const where = opened === undefined ? noticed : lineCounter.linePos(opened);
        const also = opened === undefined || where.line === noticed.line ? '' : ` (opened here, still open at line ${String(noticed.line)})`;
        return { path: '', message: `YAML syntax error at line ${String(where.line)}, column ${String(where.col)}: ${firstLine}${also}` };
      }),
      file,
    );
  }

  const raw: unknown = doc.toJS() ?? {};
  const issues: ConfigIssue[] = [];
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError([{ path: '', message: 'expected a mapping of settings at the top level (name:, base:, kubernetes:, ...)' }], file);
  }
  const parsed = imageConfigSchema.safeParse(raw);
  if (!parsed.success) issues.push(...issuesFromZod(parsed.error.issues, raw, imageConfigSchema, { doc, lineCounter }));
  issues.push(...overrideIssues(context.overrides));
  if (issues.length > 0 || !parsed.success) throw new ConfigError(issues, file);

  const config = parsed.data;
  const overrides = context.overrides ?? {};
  const configDir = file === undefined ? kibPackageRoot() : dirname(file);
  // The embedded default has no directory of its own: its outputs belong where the user is.
  const outputBase = file === undefined ? context.cwd : configDir;

  if (config.base.osFamily !== 'redhat' && hasPath(doc, ['node', 'selinux'])) {
    context.reporter?.emit({
      type: 'warning',
      message: `node.selinux is set but base.osFamily is "${config.base.osFamily}"; SELinux applies to the redhat family only, so it is ignored`,
    });
  }

  if (config.base.osFamily === 'redhat' && config.node.selinux === 'enforcing') {
    context.reporter?.emit({
      type: 'warning',
      message:
        'node.selinux: enforcing is experimental: the image labels containerd, runc and their directories, but kubeadm needs spc_t patches for etcd and the control plane (docs/playbook.md, "SELinux enforcing"), and no end-to-end run has proved it yet',
    });
  }

  if (/(^|[^a-z])latest([^a-z]|$)/i.test(lastSegment(config.base.url)) && overrides.baseUrl === undefined) {
    context.reporter?.emit({
      type: 'warning',
      message: `base.url ${config.base.url} looks like a moving "latest" link: what it points to changes over time, so pin a specific point release (and its sha256) for reproducible builds`,
    });
  }

  const base =
    overrides.baseUrl !== undefined
      ? {
          url: resolveLocation(overrides.baseUrl, context.cwd),
          checksumUrl: undefined,
          sha256: overrides.baseSha256,
          osFamily: config.base.osFamily,
        }
      : {
          url: resolveLocation(config.base.url, configDir),
          checksumUrl: config.base.checksumUrl === undefined ? undefined : resolveLocation(config.base.checksumUrl, configDir),
          sha256: overrides.baseSha256 ?? config.base.sha256,
          osFamily: config.base.osFamily,
        };

  return withConfigSha256({
    configPath: file,
    name: config.name,
    base,
    kubernetes: {
      version: config.kubernetes.version,
      series: config.kubernetes.series ?? (config.kubernetes.version ?? '').split('.').slice(0, 2).join('.'),
      pinnedBy: config.kubernetes.version !== undefined ? 'version' : 'series',
      packages: config.kubernetes.packages,
      lockedPackages: undefined,
    },
    node: { selinux: config.node.selinux, firewall: config.node.firewall, network: config.node.network },
    disk: { sizeBytes: config.disk.size },
    vm: {
      cpus: config.vm.cpus,
      memoryMiB: config.vm.memory / 1024 ** 2,
      accelerator: (overrides.accelerator as BuildSpec['vm']['accelerator'] | undefined) ?? config.vm.accelerator,
      firmware: (overrides.firmware as BuildSpec['vm']['firmware'] | undefined) ?? config.vm.firmware,
      bootTimeoutMs: config.vm.bootTimeout,
    },
    provision: { playbookPath: resolvePath(config.provision.playbook, configDir), vars: config.provision.vars },
    outputs: {
      dir: overrides.outputDir !== undefined ? resolvePath(overrides.outputDir, context.cwd) : resolvePath(config.outputs.dir, outputBase),
      formats: config.outputs.formats,
      compress: config.outputs.compress,
    },
  });
}

function lastSegment(location: string): string {
  return location.trim().replace(/[?#].*$/, '').split(/[\\/]/).pop() ?? '';
}

/** Offset of the last bracket or quote opened before `end` and not closed by then, if any. */
function unclosedOpening(text: string, end: number): number | undefined {
  const open: number[] = [];
  let quote: { char: string; at: number } | undefined;
  for (let index = 0; index < Math.min(end, text.length); index += 1) {
    const char = text[index];
    if (quote !== undefined) {
      if (char === '\\' && quote.char === '"') index += 1;
      else if (char === quote.char) quote = undefined;
      continue;
    }
    if (char === '#' && (index === 0 || /\s/.test(text[index - 1] ?? ''))) {
      const newline = text.indexOf('\n', index);
      index = newline === -1 ? text.length : newline;
    } else if (char === '"' || (char === "'" && !/\w/.test(text[index - 1] ?? ''))) {
      quote = { char, at: index };
    } else if (char === '[' || char === '{') {
      open.push(index);
    } else if ((char === ']' || char === '}') && open.length > 0) {
      open.pop();
    }
  }
  return quote?.at ?? open.at(-1);
}

function overrideIssues(overrides: BuildOverrides | undefined): ConfigIssue[] {
  if (overrides === undefined) return [];
  const issues: ConfigIssue[] = [];
  if (overrides.baseUrl !== undefined) {
    const problem = locationProblem(overrides.baseUrl);
    if (problem !== undefined) issues.push({ path: 'base.url', message: `--base ${problem}` });
  }
  if (overrides.baseSha256 !== undefined) {
    const problem = sha256Problem(overrides.baseSha256);
    if (problem !== undefined) issues.push({ path: 'base.sha256', message: `--base-sha256: ${problem}` });
  }
  if (overrides.outputDir !== undefined && overrides.outputDir.trim() === '') {
    issues.push({ path: 'outputs.dir', message: '--output must not be empty' });
  }
  if (overrides.accelerator !== undefined && !(ACCELERATORS as readonly string[]).includes(overrides.accelerator)) {
    issues.push({ path: 'vm.accelerator', message: `--accelerator: expected one of ${ACCELERATORS.join(', ')}, got ${JSON.stringify(overrides.accelerator)}` });
  }
  if (overrides.firmware !== undefined && !(FIRMWARES as readonly string[]).includes(overrides.firmware)) {
    issues.push({ path: 'vm.firmware', message: `--firmware: expected one of ${FIRMWARES.join(', ')}, got ${JSON.stringify(overrides.firmware)}` });
  }
  return issues;
}

/** URLs stay as they are; a path becomes absolute (relative to `baseDir`, "~/" to the home directory). */
export function resolveLocation(location: string, baseDir: string): string {
  const text = location.trim();
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(text)?.[1];
  if (scheme !== undefined && scheme.length > 1) return text;
  return resolvePath(text, baseDir);
}

function resolvePath(path: string, baseDir: string): string {
  const text = path.trim();
  if (text === '~') return homedir();
  if (text.startsWith('~/')) return join(homedir(), text.slice(2));
  return isAbsolute(text) ? resolve(text) : resolve(baseDir, text);
}

function hasPath(doc: ReturnType<typeof parseDocument>, path: readonly string[]): boolean {
  let node: unknown = doc.contents;
  for (const key of path) {
    if (!isMap(node)) return false;
    const pair = node.items.find((item) => isScalar(item.key) && item.key.value === key);
    if (pair === undefined) return false;
    node = pair.value;
  }
  return true;
}

async function readConfigText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (error as Error).message;
    throw new ConfigError([{ path: '', message: `cannot read ${path}: ${why}` }], path);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
