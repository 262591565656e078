import { homedir } from 'node:os';
import { join } from 'node:path';

/** Where cached base images and fixture images live (safe to delete; rebuilt on demand). */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (nonEmpty(env.KIB_CACHE_DIR)) return env.KIB_CACHE_DIR;
  if (nonEmpty(env.XDG_CACHE_HOME)) return join(env.XDG_CACHE_HOME, 'kube-image-builder');
  return join(homedir(), '.cache', 'kube-image-builder');
}

/** Where per-build logs and VM run directories live. */
export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (nonEmpty(env.KIB_STATE_DIR)) return env.KIB_STATE_DIR;
  if (nonEmpty(env.XDG_STATE_HOME)) return join(env.XDG_STATE_HOME, 'kube-image-builder');
  return join(homedir(), '.local', 'state', 'kube-image-builder');
}

/** A sortable, unique build id: 20261121T122500Z-rocky-9-3f2a. */
export function newBuildId(name: string, now: Date = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const random = Math.floor(Math.random() * 0x10000)
    .toString(16)
    .padStart(4, '0');
  return `${stamp}-${name}-${random}`;
}

function nonEmpty(value: string | undefined): value is string {
  return value !== undefined && value !== '';
}
