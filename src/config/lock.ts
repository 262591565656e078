import { randomBytes } from 'node:crypto';
import { open, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import * as z from 'zod';
import { ConfigError } from '../core/errors.js';
import { KUBERNETES_PACKAGES, type KubernetesPackage, type OsFamily, type ResolvedKubernetes } from '../core/types.js';
import { type BuildSpec, withConfigSha256 } from './build-spec.js';
import { issuesFromZod } from './issues.js';
import { sha256Problem } from './schema.js';

/**
 * image.lock: what image.yaml resolved to when someone last ran `kib lock --update`. It pins the
 * sha256 of the base while the base URL stays the same, and the Kubernetes release and exact
 * package builds while the Kubernetes setting stays the same, so a moving upstream cannot change
 * what a build starts from or installs without a reviewable change. Locks written before the
 * Kubernetes section existed are still valid (they pin the base only).
 */
export interface Lock {
  lockVersion: 1;
  base: { url: string; sha256: string; sizeBytes: number };
  kubernetes?: LockedKubernetes | undefined;
}

/** The Kubernetes release and package builds `kib lock --update` read from the series' repository. */
export type LockedKubernetes = ResolvedKubernetes;

const packageVersionSchema = z.string().regex(/^(\d+:)?[0-9A-Za-z.+~^_]+(-[0-9A-Za-z.+~^_]+)?$/, 'expected a package version like "1.37.2-150500.1.1"');

const lockSchema = z.strictObject({
  lockVersion: z.literal(1),
  base: z.strictObject({
    url: z.string().min(1),
    sha256: z.unknown().transform((value, ctx): string => {
      const problem = sha256Problem(value);
      if (problem === undefined) return value as string;
      ctx.addIssue({ code: 'custom', message: problem });
      return z.NEVER;
    }),
    sizeBytes: z.int().min(0),
  }),
  kubernetes: z
    .strictObject({
      version: z.string().regex(/^\d+\.\d+\.\d+$/, 'expected an exact release like "1.37.2"'),
      series: z.string().regex(/^v\d+\.\d+$/, 'expected a series like "v1.37"'),
      osFamily: z.enum(['redhat', 'debian']),
      arch: z.string().min(1),
      source: z.string().min(1),
      packages: z.strictObject(Object.fromEntries(KUBERNETES_PACKAGES.map((name) => [name, packageVersionSchema])) as Record<KubernetesPackage, typeof packageVersionSchema>),
    })
    .optional(),
});

const LOCK_HEADER =
  '# Written by kib lock --update: the base image and the Kubernetes packages this build definition resolves to. Do not edit by hand.\n';

/** image.yaml → image.lock (any .yaml/.yml file name works the same way). */
export function lockPathFor(configPath: string): string {
  const name = basename(configPath);
  const stem = name.replace(/\.ya?ml$/i, '');
  return join(dirname(configPath), `${stem === name ? name : stem}.lock`);
}

/** Reads a lock file; undefined when there is none. An unreadable or invalid lock is a ConfigError. */
export async function readLock(lockPath: string): Promise<Lock | undefined> {
  let text: string;
  try {
    text = await readFile(lockPath, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConfigError([{ path: '', message: `cannot read: ${(error as Error).message}` }], lockPath);
  }
  return parseLock(text, lockPath);
}

export function parseLock(text: string, file?: string): Lock {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    throw new ConfigError([{ path: '', message: `YAML syntax error: ${(error as Error).message.split('\n')[0] ?? ''}` }], file);
  }
  const parsed = lockSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(issuesFromZod(parsed.error.issues, raw, lockSchema), file);
  return parsed.data;
}

export function renderLock(lock: Lock): string {
  const lines = [
    'lockVersion: 1',
    'base:',
    `  url: ${JSON.stringify(lock.base.url)}`,
    `  sha256: ${lock.base.sha256}`,
    `  sizeBytes: ${String(lock.base.sizeBytes)}`,
  ];
  const k8s = lock.kubernetes;
  if (k8s !== undefined) {
    lines.push(
      'kubernetes:',
      `  version: ${JSON.stringify(k8s.version)}`,
      `  series: ${JSON.stringify(k8s.series)}`,
      `  osFamily: ${k8s.osFamily}`,
      `  arch: ${JSON.stringify(k8s.arch)}`,
      `  source: ${JSON.stringify(k8s.source)}`,
      '  packages:',
      ...KUBERNETES_PACKAGES.map((name) => `    ${name}: ${JSON.stringify(k8s.packages[name])}`),
    );
  }
  return `${LOCK_HEADER}${lines.join('\n')}\n`;
}

/** Writes the lock atomically: a reader sees the old file or the new one, never half of one. */
export async function writeLock(lockPath: string, lock: Lock): Promise<void> {
  const temp = join(dirname(lockPath), `.${basename(lockPath)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await open(temp, 'wx');
    try {
      await handle.writeFile(renderLock(lock), 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, lockPath);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/**
 * Applies the lock to a spec. The base part pins spec.base.sha256 when the lock is for the same
 * base URL; a lock for another URL does not apply, and a sha256 pinned in image.yaml itself wins
 * over the lock (it is the more deliberate statement). The Kubernetes part applies when it was
 * resolved for what image.yaml asks (the same exact version, or the same series) and for the same
 * OS family: it then gives a series its release and every build its exact package versions.
 * Whatever does not apply is left alone and named in a note, for the CLI to show; `kib lock
 * --update` brings the lock in line.
 */
export function applyLock(spec: BuildSpec, lock: Lock | undefined, lockPath = 'image.lock'): { spec: BuildSpec; notes: string[] } {
  const lockName = basename(lockPath);
  const notes: string[] = [];
  let next = spec;
  if (lock !== undefined) {
    if (lock.base.url !== spec.base.url) {
      notes.push(`${lockName} is for another base (${lock.base.url}), so it does not apply to ${spec.base.url}; run \`kib lock --update\``);
    } else if (spec.base.sha256 !== undefined && spec.base.sha256 !== lock.base.sha256) {
      notes.push(`base.sha256 is pinned to ${spec.base.sha256} but ${lockName} records ${lock.base.sha256} for the same URL; using the pin, run \`kib lock --update\``);
    } else if (spec.base.sha256 !== lock.base.sha256) {
      next = { ...next, base: { ...next.base, sha256: lock.base.sha256 } };
    }
  }
  const kubernetes = kubernetesFromLock(spec, lock?.kubernetes, lockName);
  if (kubernetes.note !== undefined) notes.push(kubernetes.note);
  if (kubernetes.applied !== undefined) next = { ...next, kubernetes: kubernetes.applied };
  return { spec: next === spec ? spec : withConfigSha256(next), notes };
}

function kubernetesFromLock(
  spec: BuildSpec,
  locked: LockedKubernetes | undefined,
  lockName: string,
): { applied?: BuildSpec['kubernetes']; note?: string } {
  const wanted = spec.kubernetes.pinnedBy === 'version' ? `version ${String(spec.kubernetes.version)}` : `series "${spec.kubernetes.series}"`;
  if (locked === undefined) {
    return spec.kubernetes.pinnedBy === 'series'
      ? { note: `kubernetes.series "${spec.kubernetes.series}" is not resolved: ${lockName} records no Kubernetes release; run \`kib lock --update\`` }
      : {};
  }
  if (locked.osFamily !== spec.base.osFamily) {
    return { note: `${lockName} records Kubernetes packages for ${locked.osFamily}, but base.osFamily is ${spec.base.osFamily}; they do not apply, run \`kib lock --update\`` };
  }
  const matches =
    spec.kubernetes.pinnedBy === 'version' ? locked.version === spec.kubernetes.version : locked.series === `v${spec.kubernetes.series}`;
  if (!matches) {
    return { note: `${lockName} records Kubernetes ${locked.version} (${locked.series}), but image.yaml asks for ${wanted}; the lock's packages do not apply, run \`kib lock --update\`` };
  }
  return { applied: { ...spec.kubernetes, version: locked.version, lockedPackages: { ...locked.packages } } };
}

/**
 * The exact Kubernetes release of a spec, for a build. A series without a lock that resolves it
 * has none, and the build must not start: the error says how to resolve it.
 */
export function requireKubernetesVersion(spec: BuildSpec): string {
  if (spec.kubernetes.version !== undefined) return spec.kubernetes.version;
  throw new ConfigError(
    [
      {
        path: 'kubernetes.series',
        message: `"${spec.kubernetes.series}" follows the newest patch of the series, and no lock file resolves it: run \`kib lock --update\` (it reads pkgs.k8s.io, so it needs the network) and commit the lock, or pin kubernetes.version`,
      },
    ],
    spec.configPath,
  );
}

/** The lock for a spec, given the base image and the Kubernetes packages that were resolved for it. */
export function updateLock(spec: BuildSpec, resolvedBase: { sha256: string; sizeBytes: number }, resolvedKubernetes?: LockedKubernetes): Lock {
  return {
    lockVersion: 1,
    base: { url: spec.base.url, sha256: resolvedBase.sha256, sizeBytes: resolvedBase.sizeBytes },
    ...(resolvedKubernetes === undefined ? {} : { kubernetes: resolvedKubernetes }),
  };
}
