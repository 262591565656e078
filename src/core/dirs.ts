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

function nonEmpty(value: string | undefined): value is string {
  return value !== undefined && value !== '';
}
