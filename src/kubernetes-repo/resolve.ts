import { gunzipSync } from 'node:zlib';
import * as zlib from 'node:zlib';
import { CancelledError, describeFetchError, KibError, NetworkError } from '../core/errors.js';
import type { KubernetesPackage, OsFamily, ResolvedKubernetes } from '../core/types.js';
import { findTool, run } from '../process/index.js';
import { type Reporter, silentReporter } from '../report/events.js';
import { parseDebianPackages, parseRepomdPrimaryHref, parseRpmPrimary, type RepoPackage } from './metadata.js';
import { compareDebianVersions, compareRpmVersions, renderPackageVersion } from './version.js';

/** The packages built from the Kubernetes release itself; they carry its version. */
const RELEASE_PACKAGES = ['kubeadm', 'kubelet', 'kubectl'] as const;

/**
 * pkgs.k8s.io's community repositories: `<base>v1.37/rpm/` and `<base>v1.37/deb/`, one per minor
 * series (https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/install-kubeadm/).
 */
export const DEFAULT_KUBERNETES_REPO_BASE = 'https://pkgs.k8s.io/core:/stable:/';
/** Replaces DEFAULT_KUBERNETES_REPO_BASE for `kib lock --update` (a mirror, or a test server). */
export const KUBERNETES_REPO_BASE_ENV = 'KIB_KUBERNETES_REPO_BASE';

export interface KubernetesRequest {
  /** The minor series, `1.37`. */
  series: string;
  /** An exact release within the series (`1.37.2`); without it, the newest patch is chosen. */
  version?: string | undefined;
  osFamily: OsFamily;
  /** Node.js architecture name of the image (`x64`, `arm64`); mapped to the repository's names. */
  arch: string;
  /** Replaces DEFAULT_KUBERNETES_REPO_BASE. */
  repoBase?: string | undefined;
}

export type { ResolvedKubernetes } from '../core/types.js';

export interface ResolveKubernetesOptions {
  signal?: AbortSignal | undefined;
  reporter?: Reporter | undefined;
  /** Replaces the global fetch (tests). */
  fetchImpl?: typeof fetch | undefined;
  /** Time allowed until a response's headers arrive; short, so that being offline fails fast. */
  connectTimeoutMs?: number | undefined;
  /** Time allowed for a whole response body. */
  readTimeoutMs?: number | undefined;
}

const MAX_METADATA_BYTES = 256 * 1024 * 1024;
const USER_AGENT = 'kube-image-builder';

/** The repository of one series for one package format, ending in `/`. */
export function kubernetesRepoUrl(series: string, osFamily: OsFamily, repoBase: string = DEFAULT_KUBERNETES_REPO_BASE): string {
  const base = repoBase.endsWith('/') ? repoBase : `${repoBase}/`;
  return `${base}v${series.replace(/^v/, '')}/${osFamily === 'redhat' ? 'rpm' : 'deb'}/`;
}

/** The repository's architecture names for a Node.js architecture, most specific first. */
export function repoArchitectures(nodeArch: string, osFamily: OsFamily): string[] {
  const rpm: Record<string, string> = { x64: 'x86_64', arm64: 'aarch64', ppc64: 'ppc64le', s390x: 's390x' };
  const deb: Record<string, string> = { x64: 'amd64', arm64: 'arm64', ppc64: 'ppc64el', s390x: 's390x' };
  const own = (osFamily === 'redhat' ? rpm : deb)[nodeArch] ?? nodeArch;
  return [own, osFamily === 'redhat' ? 'noarch' : 'all'];
}

/**
 * Reads the series' repository over HTTP and picks the exact package versions: the newest patch
 * of the series (or the requested release), the newest build of it, and the newest cri-tools and
 * kubernetes-cni in the repository. rpm: repodata/repomd.xml → the primary metadata; deb: the flat
 * repository's Packages index.
 */
export async function resolveKubernetes(request: KubernetesRequest, options: ResolveKubernetesOptions = {}): Promise<ResolvedKubernetes> {
  const reporter = options.reporter ?? silentReporter;
  const source = kubernetesRepoUrl(request.series, request.osFamily, request.repoBase);
  let packages: RepoPackage[];
  if (request.osFamily === 'redhat') {
    const repomdUrl = `${source}repodata/repomd.xml`;
    const repomd = await fetchBytes(repomdUrl, options);
    if (repomd === undefined) throw notFound(repomdUrl, source);
    const href = parseRepomdPrimaryHref(repomd.toString('utf8'));
    if (href === undefined) throw new KibError('REPO_METADATA_INVALID', `${repomdUrl} lists no primary metadata (<data type="primary">)`);
    const primaryUrl = new URL(href, source).href;
    reporter.emit({ type: 'step', phase: 'lock', message: `reading ${primaryUrl}` });
    const compressed = await fetchBytes(primaryUrl, options);
    if (compressed === undefined) throw notFound(primaryUrl, source);
    packages = parseRpmPrimary(await decompress(compressed, primaryUrl, options.signal));
  } else {
    // A flat repository may offer its index in several compressions; apt takes one of them. The
    // first that exists is read.
    const candidates = ['Packages.gz', 'Packages.xz', 'Packages'].map((name) => `${source}${name}`);
    let text: string | undefined;
    for (const url of candidates) {
      reporter.emit({ type: 'step', phase: 'lock', message: `reading ${url}` });
      const bytes = await fetchBytes(url, options);
      if (bytes === undefined) continue;
      text = await decompress(bytes, url, options.signal);
      break;
    }
    if (text === undefined) throw notFound(candidates.join(', '), source);
    packages = parseDebianPackages(text);
  }
  const chosen = selectKubernetesPackages(packages, request, source);
  return { ...chosen, osFamily: request.osFamily, source };
}

/**
 * The choice itself, from a repository's package list: pure, so the rules are tested without HTTP.
 * The release packages must all exist at the chosen version; an exact request that the
 * repository does not carry is an error naming the newest it does carry.
 */
export function selectKubernetesPackages(
  all: readonly RepoPackage[],
  request: KubernetesRequest,
  source: string,
): { version: string; series: string; arch: string; packages: Record<KubernetesPackage, string> } {
  const series = request.series.replace(/^v/, '');
  const compare = request.osFamily === 'redhat' ? compareRpmVersions : compareDebianVersions;
  const arches = repoArchitectures(request.arch, request.osFamily);
  const usable = all.filter((p) => arches.includes(p.arch));
  const newest = (candidates: readonly RepoPackage[]): RepoPackage | undefined =>
    candidates.reduce<RepoPackage | undefined>((best, p) => (best === undefined || compare(p.version, best.version) > 0 ? p : best), undefined);
  // Stable releases of the series only: the stable repositories carry no pre-releases, but a
  // mirror might, and "newest" must never mean a release candidate.
  const inSeries = (p: RepoPackage): boolean => p.version.epoch === 0 && new RegExp(`^${series.replace('.', '\\.')}\\.\\d+$`).test(p.version.version);

  const kubeadm = usable.filter((p) => p.name === 'kubeadm' && inSeries(p));
  let version = request.version;
  if (version === undefined) {
    const top = newest(kubeadm);
    if (top === undefined) {
      throw new KibError('REPO_NO_RELEASE', `${source} has no kubeadm ${series}.x build for ${arches[0] ?? request.arch}`, {
        hint: `Check kubernetes.series and the repository (${KUBERNETES_REPO_BASE_ENV} replaces ${DEFAULT_KUBERNETES_REPO_BASE}).`,
      });
    }
    version = top.version.version;
  }

  const packages: Partial<Record<KubernetesPackage, string>> = {};
  const missing: string[] = [];
  for (const name of RELEASE_PACKAGES) {
    const build = newest(usable.filter((p) => p.name === name && p.version.version === version));
    if (build === undefined) missing.push(`${name} ${String(version)}`);
    else packages[name] = renderPackageVersion(build.version);
  }
  for (const name of ['cri-tools', 'kubernetes-cni'] as const) {
    const build = newest(usable.filter((p) => p.name === name));
    if (build === undefined) missing.push(name);
    else packages[name] = renderPackageVersion(build.version);
  }
  if (missing.length > 0) {
    const newestRelease = newest(kubeadm)?.version.version;
    throw new KibError('REPO_PACKAGE_MISSING', `${source} has no ${missing.join(', ')} for ${arches[0] ?? request.arch}`, {
      hint:
        newestRelease === undefined
          ? 'Check the Kubernetes version in the build definition.'
          : `The newest ${series} release it carries is ${newestRelease}; pin that, or use kubernetes.series to follow the newest patch.`,
    });
  }
  return { version, series: `v${series}`, arch: arches[0] ?? request.arch, packages: packages as Record<KubernetesPackage, string> };
}

/** Undefined for 404 (so that a caller may try another name); every other failure throws. */
async function fetchBytes(url: string, options: ResolveKubernetesOptions): Promise<Buffer | undefined> {
  const fetchImpl = options.fetchImpl ?? globalThis.fetch;
  const controller = new AbortController();
  const onAbort = (): void => controller.abort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  if (options.signal?.aborted === true) controller.abort();
  let timedOut: string | undefined;
  const arm = (ms: number, what: string): NodeJS.Timeout =>
    setTimeout(() => {
      timedOut = what;
      controller.abort();
    }, ms);
  const connectMs = options.connectTimeoutMs ?? 15_000;
  const readMs = options.readTimeoutMs ?? 120_000;
  let timer = arm(connectMs, `no response within ${String(Math.round(connectMs / 1000))} s`);
  try {
    let response: Response;
    try {
      response = await fetchImpl(url, { headers: { 'user-agent': USER_AGENT }, signal: controller.signal, redirect: 'follow' });
    } catch (error) {
      if (options.signal?.aborted === true) throw new CancelledError('Reading the Kubernetes package repository');
      throw new NetworkError(url, `could not reach ${url}: ${timedOut ?? describeFetchError(error)}`, { cause: error });
    }
    clearTimeout(timer);
    if (response.status === 404) {
      await response.body?.cancel().catch(() => {});
      return undefined;
    }
    if (!response.ok) {
      await response.body?.cancel().catch(() => {});
      throw new NetworkError(url, `${url} answered HTTP ${String(response.status)} ${response.statusText}`.trimEnd());
    }
    timer = arm(readMs, `the response took longer than ${String(Math.round(readMs / 1000))} s`);
    try {
      const bytes = Buffer.from(await response.arrayBuffer());
      if (bytes.byteLength > MAX_METADATA_BYTES) throw new KibError('REPO_METADATA_TOO_LARGE', `${url} is larger than ${String(MAX_METADATA_BYTES)} bytes`);
      return bytes;
    } catch (error) {
      if (error instanceof KibError) throw error;
      if (options.signal?.aborted === true) throw new CancelledError('Reading the Kubernetes package repository');
      throw new NetworkError(url, `reading ${url} failed: ${timedOut ?? describeFetchError(error)}`, { cause: error });
    }
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
  }
}

function notFound(what: string, source: string): KibError {
  return new KibError('REPO_NOT_FOUND', `${what} answered HTTP 404: ${source} is not a package repository of this layout`, {
    hint: 'Check the Kubernetes series (pkgs.k8s.io has one repository per minor series, v1.XX) and the repository base.',
  });
}

type Decompressor = (data: Buffer) => Buffer;

/** Repository metadata as text, by its file name's compression suffix. */
async function decompress(data: Buffer, url: string, signal: AbortSignal | undefined): Promise<string> {
  const path = new URL(url).pathname;
  if (path.endsWith('.gz')) return gunzipSync(data, { maxOutputLength: MAX_METADATA_BYTES }).toString('utf8');
  if (path.endsWith('.zst')) {
    // Node.js has zstd from 22.15; on older runtimes the zstd tool does the same, if it is there.
    const native = (zlib as unknown as { zstdDecompressSync?: Decompressor }).zstdDecompressSync;
    if (native !== undefined) return native(data).toString('utf8');
    return decompressWithTool('zstd', ['-d', '-c', '-q'], 'zstd', data, url, signal);
  }
  if (path.endsWith('.xz')) return decompressWithTool('xz', ['-d', '-c', '-q'], 'xz-utils', data, url, signal);
  if (path.endsWith('.bz2')) return decompressWithTool('bzip2', ['-d', '-c', '-q'], 'bzip2', data, url, signal);
  if (/\.[a-z0-9]+$/i.test(path) && !path.endsWith('.xml')) {
    throw new KibError('REPO_COMPRESSION', `${url} uses a compression kib cannot read (${path.split('.').pop() ?? ''})`, {
      hint: 'kib reads gzip, and zstd, xz or bzip2 through the host tools of those names.',
    });
  }
  return data.toString('utf8');
}

async function decompressWithTool(tool: string, args: string[], packageName: string, data: Buffer, url: string, signal: AbortSignal | undefined): Promise<string> {
  if (findTool(tool) === undefined) {
    throw new KibError('REPO_COMPRESSION', `${url} is ${tool}-compressed, and this Node.js cannot decompress ${tool} without the '${tool}' tool`, {
      hint: `Install ${packageName} (sudo apt-get install ${packageName}), or run kib on Node.js 22.15 or newer.`,
    });
  }
  const result = await run(tool, args, { input: data, timeoutMs: 120_000, ...(signal === undefined ? {} : { signal }) });
  return result.stdout;
}


