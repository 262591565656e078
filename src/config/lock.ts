import { randomBytes } from 'node:crypto';
import { open, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import * as z from 'zod';
import { ConfigError } from '../core/errors.js';
import { type BuildSpec, withConfigSha256 } from './build-spec.js';
import { issuesFromZod } from './issues.js';
import { sha256Problem } from './schema.js';

/**
 * image.lock: the base image that image.yaml resolved to when someone last ran
 * `kib lock --update`. It pins the sha256 of the base while the base URL stays the same, so
 * a moving upstream cannot change what a build starts from without a reviewable change.
 */
export interface Lock {
  lockVersion: 1;
  base: { url: string; sha256: string; sizeBytes: number };
}

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
});

const LOCK_HEADER = '# Written by kib lock --update: the base image this build definition resolves to. Do not edit by hand.\n';

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
  return `${LOCK_HEADER}lockVersion: 1\nbase:\n  url: ${JSON.stringify(lock.base.url)}\n  sha256: ${lock.base.sha256}\n  sizeBytes: ${String(lock.base.sizeBytes)}\n`;
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
 * Pins spec.base.sha256 from the lock when the lock is for the same base URL. A lock for another
 * URL does not apply, and a sha256 pinned in image.yaml itself wins over the lock (it is the more
 * deliberate statement); in both cases the note says so, for the CLI to show, and
 * `kib lock --update` brings the lock in line.
 */
export function applyLock(spec: BuildSpec, lock: Lock | undefined, lockPath = 'image.lock'): { spec: BuildSpec; note: string | undefined } {
  if (lock === undefined) return { spec, note: undefined };
  const lockName = basename(lockPath);
  if (lock.base.url !== spec.base.url) {
    return {
      spec,
      note: `${lockName} is for another base (${lock.base.url}), so it does not apply to ${spec.base.url}; run \`kib lock --update\``,
    };
  }
  if (spec.base.sha256 !== undefined && spec.base.sha256 !== lock.base.sha256) {
    return {
      spec,
      note: `base.sha256 is pinned to ${spec.base.sha256} but ${lockName} records ${lock.base.sha256} for the same URL; using the pin, run \`kib lock --update\``,
    };
  }
  if (spec.base.sha256 === lock.base.sha256) return { spec, note: undefined };
  return { spec: withConfigSha256({ ...spec, base: { ...spec.base, sha256: lock.base.sha256 } }), note: undefined };
}

/** The lock for a spec, given the base image the base phase resolved (its sha256 and size). */
export function updateLock(spec: BuildSpec, resolvedBase: { sha256: string; sizeBytes: number }): Lock {
  return { lockVersion: 1, base: { url: spec.base.url, sha256: resolvedBase.sha256, sizeBytes: resolvedBase.sizeBytes } };
}
