import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { KibError } from '../core/errors.js';

/** Characters outside this set become `-` in artifact names. */
function sanitize(text: string): string {
  return text.replace(/[^A-Za-z0-9._-]/g, '-');
}

/**
 * The file-name stem every artifact of a build shares, and the name of its output directory:
 * `<name>-kube-v<kubernetesVersion>-<imageVersion>`, e.g. `rocky-9-kube-v1.36.1-v0.3.0`.
 */
export function artifactStem(input: { name: string; kubernetesVersion: string; imageVersion: string }): string {
  return sanitize(`${input.name}-kube-v${input.kubernetesVersion}-${input.imageVersion}`);
}

/** The containerDisk's tag: the stem without the image name (the name is the repository's). */
export function containerDiskTag(input: { kubernetesVersion: string; imageVersion: string }): string {
  const tag = sanitize(`kube-v${input.kubernetesVersion}-${input.imageVersion}`).slice(0, 128);
  return /^[A-Za-z0-9_]/.test(tag) ? tag : `v${tag}`.slice(0, 128);
}

const STAGING_PREFIX = '.staging-';

/**
 * Creates `<outputDir>/.staging-<id>`: inside the output directory, so the final move is a rename
 * on one filesystem and therefore all-or-nothing.
 */
export async function createStaging(outputDir: string, id: string = randomBytes(6).toString('hex')): Promise<string> {
  if (!/^[A-Za-z0-9._-]+$/.test(id)) throw new KibError('EXPORT_INVALID', `staging id '${id}' must match [A-Za-z0-9._-]+`);
  const dir = join(resolve(outputDir), `${STAGING_PREFIX}${id}`);
  await mkdir(dirname(dir), { recursive: true });
  // Not recursive: an existing staging dir with this id belongs to someone else.
  await mkdir(dir);
  return dir;
}

/** Removes a staging directory and everything in it; a missing one is fine. */
export async function discardStaging(stagingDir: string): Promise<void> {
  if (!basename(stagingDir).startsWith(STAGING_PREFIX)) {
    throw new KibError('EXPORT_INVALID', `refusing to delete ${stagingDir}: not a staging directory (${STAGING_PREFIX}*)`);
  }
  await rm(stagingDir, { recursive: true, force: true });
}

/**
 * Moves the staging directory to `<outputDir>/<stemDirName>` with one rename. An existing directory
 * of that name is first renamed aside, then removed once the new one is in place; if the second
 * rename fails the old one is put back. Returns the final directory.
 */
export async function finalizeOutput(stagingDir: string, outputDir: string, stemDirName: string): Promise<string> {
  if (!/^[A-Za-z0-9._-]+$/.test(stemDirName) || stemDirName.startsWith('.')) {
    throw new KibError('EXPORT_INVALID', `output directory name '${stemDirName}' must match [A-Za-z0-9._-]+ and not start with '.'`);
  }
  const outDir = resolve(outputDir);
  const staging = resolve(stagingDir);
  if (relative(outDir, dirname(staging)) !== '') {
    throw new KibError('EXPORT_INVALID', `staging directory ${staging} is not directly inside ${outDir}; the final move must be a rename within one directory`, {
      hint: 'Create it with createStaging(outputDir).',
    });
  }
  await mkdir(outDir, { recursive: true });
  const target = join(outDir, stemDirName);
  const existing = await stat(target).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (existing === undefined) {
    await rename(staging, target);
    return target;
  }
  const aside = join(outDir, `.old-${stemDirName}-${randomBytes(6).toString('hex')}`);
  await rename(target, aside);
  try {
    await rename(staging, target);
  } catch (error) {
    await rename(aside, target);
    throw error;
  }
  await rm(aside, { recursive: true, force: true });
  return target;
}
