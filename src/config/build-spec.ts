import type { KubernetesPackage, OsFamily } from '../core/types.js';
import { canonicalJson, sha256Hex } from './canonical.js';
import type { OutputFormat } from './schema.js';

/** A validated build definition with every default applied, every path absolute, every unit converted. */
export interface BuildSpec {
  /** Absolute path of the image.yaml it came from; undefined for the embedded default. */
  configPath: string | undefined;
  /** sha256 of the canonical JSON of this spec without configPath and configSha256. */
  configSha256: string;
  name: string;
  base: {
    /** An http(s) or file URL, or an absolute local path. */
    url: string;
    checksumUrl: string | undefined;
    sha256: string | undefined;
    osFamily: OsFamily;
  };
  kubernetes: {
    /**
     * The exact release: image.yaml's `version`, or for a `series` the release image.lock resolved
     * it to. Undefined for a series that no applicable lock has resolved yet (a build refuses that).
     */
    version: string | undefined;
    /** The minor series, `1.37` (from `series`, or the first two parts of `version`). */
    series: string;
    /** `version`: image.yaml pins the release; `series`: it follows the newest patch, through the lock. */
    pinnedBy: 'version' | 'series';
    packages: 'required' | 'auto' | 'skip';
    /** Exact package versions (`1.37.2-150500.1.1`) from image.lock; undefined when no lock applies. */
    lockedPackages: Record<KubernetesPackage, string> | undefined;
  };
  node: {
    selinux: 'permissive' | 'enforcing';
    firewall: boolean;
    /** The cluster networks the firewall lets through. */
    network: { podCidrs: string[]; serviceCidrs: string[]; overlayPorts: string[] };
  };
  disk: { sizeBytes: number };
  vm: {
    cpus: number;
    memoryMiB: number;
    accelerator: 'auto' | 'kvm' | 'tcg';
    firmware: 'bios' | 'uefi';
    bootTimeoutMs: number;
  };
  /** playbookPath is absolute. */
  provision: { playbookPath: string; vars: Record<string, unknown> };
  /** dir is absolute; formats are unique, in the order qcow2, raw, containerdisk, and include qcow2. */
  outputs: { dir: string; formats: OutputFormat[]; compress: boolean };
}

/**
 * Command-line overrides; paths and URLs in them are relative to the working directory. Values
 * are validated like the file's (accelerator and firmware take the raw option text), and their
 * problems are reported in the same ConfigError.
 */
export interface BuildOverrides {
  /** A path or URL of another base image; the file's checksumUrl and sha256 no longer apply. */
  baseUrl?: string | undefined;
  baseSha256?: string | undefined;
  outputDir?: string | undefined;
  /** auto | kvm | tcg */
  accelerator?: string | undefined;
  /** bios | uefi */
  firmware?: string | undefined;
}

export function computeConfigSha256(spec: Omit<BuildSpec, 'configSha256'> & { configSha256?: string }): string {
  const { configPath: _configPath, configSha256: _configSha256, ...rest } = spec;
  return sha256Hex(canonicalJson(rest));
}

/** Returns the spec with configSha256 recomputed (after anything in it changed). */
export function withConfigSha256(spec: Omit<BuildSpec, 'configSha256'> & { configSha256?: string }): BuildSpec {
  return { ...spec, configSha256: computeConfigSha256(spec) };
}
