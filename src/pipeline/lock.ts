import { arch as hostArch } from 'node:os';
import { fetchBaseImage, type FetchedBaseImage } from '../base-image/index.js';
import { type BuildSpec, type Lock, type LockedKubernetes, lockPathFor, updateLock, writeLock } from '../config/index.js';
import { NetworkError, UsageError } from '../core/errors.js';
import { DEFAULT_KUBERNETES_REPO_BASE, KUBERNETES_REPO_BASE_ENV, kubernetesRepoUrl, resolveKubernetes } from '../kubernetes-repo/index.js';
import type { Reporter } from '../report/events.js';

export interface UpdateLockOptions {
  cacheDir: string;
  signal?: AbortSignal | undefined;
  reporter: Reporter;
  /** Replaces https://pkgs.k8s.io/core:/stable:/ (KIB_KUBERNETES_REPO_BASE). */
  kubernetesRepoBase?: string | undefined;
  /** Node.js architecture of the image; the host's by default (the build VM has the host's). */
  arch?: string | undefined;
  /** Replaces the global fetch (tests). */
  fetchImpl?: typeof fetch | undefined;
  connectTimeoutMs?: number | undefined;
}

export interface UpdateLockResult {
  lockPath: string;
  lock: Lock;
  base: FetchedBaseImage;
}

/**
 * `kib lock --update`: resolves what the build definition names and rewrites its lock file. The
 * Kubernetes repository is read first, because it is quick and needs the network: offline, the
 * command fails within seconds naming the URL, before any base image download, and the lock file
 * is left as it was. The lock is written only when everything resolved, atomically.
 */
export async function updateLockFile(spec: BuildSpec, options: UpdateLockOptions): Promise<UpdateLockResult> {
  if (spec.configPath === undefined) {
    throw new UsageError('There is no build definition file to lock (using the embedded default)', 'Create image.yaml (see docs/configuration.md) or pass --config FILE.');
  }
  const lockPath = lockPathFor(spec.configPath);
  const kubernetes = await resolveLockedKubernetes(spec, lockPath, options);
  const base = await fetchBaseImage(
    { url: spec.base.url, ...(spec.base.checksumUrl === undefined ? {} : { checksumUrl: spec.base.checksumUrl }), ...(spec.base.sha256 === undefined ? {} : { sha256: spec.base.sha256 }) },
    { cacheDir: options.cacheDir, signal: options.signal, reporter: options.reporter, fetchImpl: options.fetchImpl },
  );
  const lock = updateLock(spec, base, kubernetes);
  await writeLock(lockPath, lock);
  return { lockPath, lock, base };
}

async function resolveLockedKubernetes(spec: BuildSpec, lockPath: string, options: UpdateLockOptions): Promise<LockedKubernetes | undefined> {
  // Nothing is installed, and the release is pinned: there is nothing to resolve.
  if (spec.kubernetes.packages === 'skip' && spec.kubernetes.pinnedBy === 'version') return undefined;
  const repoBase = options.kubernetesRepoBase ?? DEFAULT_KUBERNETES_REPO_BASE;
  const source = kubernetesRepoUrl(spec.kubernetes.series, spec.base.osFamily, repoBase);
  options.reporter.emit({
    type: 'step',
    phase: 'lock',
    message: `resolving ${spec.kubernetes.pinnedBy === 'version' ? `Kubernetes ${String(spec.kubernetes.version)}` : `the newest Kubernetes ${spec.kubernetes.series} patch`} from ${source}`,
  });
  try {
    const resolved = await resolveKubernetes(
      {
        series: spec.kubernetes.series,
        ...(spec.kubernetes.pinnedBy === 'version' ? { version: spec.kubernetes.version } : {}),
        osFamily: spec.base.osFamily,
        arch: options.arch ?? hostArch(),
        repoBase,
      },
      { signal: options.signal, reporter: options.reporter, fetchImpl: options.fetchImpl, connectTimeoutMs: options.connectTimeoutMs },
    );
    options.reporter.emit({
      type: 'step',
      phase: 'lock',
      message: `Kubernetes ${resolved.version}: ${Object.entries(resolved.packages).map(([name, version]) => `${name} ${version}`).join(', ')}`,
    });
    return resolved;
  } catch (error) {
    if (error instanceof NetworkError) {
      throw new NetworkError(error.url, error.message, {
        hint: `kib lock --update reads the Kubernetes package repository ${source} and needs network access to it (${KUBERNETES_REPO_BASE_ENV} replaces ${DEFAULT_KUBERNETES_REPO_BASE} with a mirror). ${lockPath} was not changed.`,
        cause: error,
      });
    }
    throw error;
  }
}
