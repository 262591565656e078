import { arch } from 'node:os';
import { dirname } from 'node:path';
import { findStoredByUrl } from '../base-image/index.js';
import { canonicalJson, requireKubernetesVersion, sha256Hex, type BuildSpec } from '../config/index.js';
import { buildFactsSchema, type BuildFacts } from '../core/build-facts.js';
import { KibError } from '../core/errors.js';
import { hashTree } from '../export/index.js';
import { describeGitVersion, type GitVersion } from './git-version.js';

export const TOOL_NAME = 'kube-image-builder';

/**
 * The one place the build's facts are assembled; everything else (playbook variables, the
 * manifest, the stage keys) is produced from the record this returns.
 */
export function assembleBuildFacts(
  spec: BuildSpec,
  found: {
    version: GitVersion;
    base: { url: string; sha256: string };
    playbookSha256: string;
    toolVersion: string;
    accelerator: 'kvm' | 'tcg';
    hostArch: string;
    buildDate: string;
  },
): BuildFacts {
  return buildFactsSchema.parse({
    image: { name: spec.name, version: found.version.version, commit: found.version.commit ?? null },
    kubernetes: { version: requireKubernetesVersion(spec), packages: spec.kubernetes.packages, lockedPackages: spec.kubernetes.lockedPackages ?? null },
    node: { selinux: spec.node.selinux, firewall: spec.node.firewall, network: spec.node.network },
    base: { url: found.base.url, sha256: found.base.sha256, osFamily: spec.base.osFamily },
    disk: { sizeBytes: spec.disk.sizeBytes },
    config: { path: spec.configPath ?? null, sha256: spec.configSha256 },
    playbook: { sha256: found.playbookSha256, vars: spec.provision.vars },
    tool: { name: TOOL_NAME, version: found.toolVersion },
    build: { date: found.buildDate, accelerator: found.accelerator, hostArch: found.hostArch },
  } satisfies BuildFacts);
}

/** Where the build date came from: a stage key that reads it can only hit again when it is fixed. */
export type BuildDateSource = 'SOURCE_DATE_EPOCH' | 'git-commit' | 'now';

export interface BuildDate {
  /** RFC 3339 UTC, seconds. */
  date: string;
  source: BuildDateSource;
}

/**
 * The build date written into the image, in this order:
 * 1. `SOURCE_DATE_EPOCH` when set (the reproducible-builds.org convention,
 *    https://reproducible-builds.org/specs/source-date-epoch/);
 * 2. the committer date of HEAD in the build definition's repository, when its tracked files are
 *    unchanged (the same commit gives the same date, so an unchanged rebuild can hit every key
 *    and be a no-op);
 * 3. the time the build started (a dirty tree or no Git: every build is new).
 */
export function resolveBuildDate(startedAt: Date, env: NodeJS.ProcessEnv = process.env, git?: Pick<GitVersion, 'dirty' | 'commitEpochSeconds'>): BuildDate {
  const epoch = env.SOURCE_DATE_EPOCH;
  if (epoch !== undefined && epoch !== '') {
    if (!/^\d+$/.test(epoch)) throw new KibError('SOURCE_DATE_EPOCH_INVALID', `SOURCE_DATE_EPOCH must be a number of seconds since 1970, got "${epoch}"`);
    return { date: rfc3339Seconds(new Date(Number(epoch) * 1000)), source: 'SOURCE_DATE_EPOCH' };
  }
  if (git !== undefined && !git.dirty && git.commitEpochSeconds !== undefined) {
    return { date: rfc3339Seconds(new Date(git.commitEpochSeconds * 1000)), source: 'git-commit' };
  }
  return { date: rfc3339Seconds(startedAt), source: 'now' };
}

function rfc3339Seconds(date: Date): string {
  return date.toISOString().replace(/\.\d+Z$/, 'Z');
}

/**
 * Facts for `kib plan`, which fetches nothing: the base's sha256 from the pin or the base cache
 * (else the key chain starts from its URL), the Git version, the build date as a build would
 * take it now. The accelerator is not probed: no key covers it.
 */
export async function planningFacts(
  spec: BuildSpec,
  options: { cacheDir: string; repoDir: string; toolVersion: string; env?: NodeJS.ProcessEnv },
): Promise<{ facts: BuildFacts; baseResolved: boolean }> {
  const stored = spec.base.sha256 === undefined ? await findStoredByUrl(options.cacheDir, spec.base.url).catch(() => undefined) : undefined;
  const sha256 = spec.base.sha256 ?? stored?.sha256;
  const version = await describeGitVersion(options.repoDir);
  const facts = assembleBuildFacts(spec, {
    version,
    base: { url: spec.base.url, sha256: sha256 ?? sha256Hex(canonicalJson({ url: spec.base.url, checksumUrl: spec.base.checksumUrl ?? null })) },
    playbookSha256: await hashTree(dirname(spec.provision.playbookPath)),
    toolVersion: options.toolVersion,
    accelerator: spec.vm.accelerator === 'kvm' ? 'kvm' : 'tcg',
    hostArch: arch(),
    buildDate: resolveBuildDate(new Date(), options.env, version).date,
  });
  return { facts, baseResolved: sha256 !== undefined };
}
