import { factsFromManifest, parseBuildManifest } from '../core/build-facts.js';
import { KibError } from '../core/errors.js';
import type { OsFamily } from '../core/types.js';

/**
 * What a verified image is supposed to be. Checks compare what they measure against this, and
 * skip with its stated reasons (Kubernetes packages skipped offline, SELinux on Debian).
 */
export interface ExpectedImage {
  osFamily: OsFamily;
  /** Exact MAJOR.MINOR.PATCH, without "v". */
  kubernetesVersion: string;
  kubernetesInstalled: boolean;
  /** Why the Kubernetes packages are missing, as the build recorded it; null when installed. */
  kubernetesSkippedReason: string | null;
  selinux: 'permissive' | 'enforcing';
  firewall: boolean;
  imageVersion?: string;
  /** Set when the verify VM's disk was grown before boot; the root filesystem must follow. */
  diskGrownToBytes?: number;
}

/** Values that replace what the manifest or release file says; undefined entries are ignored. */
export type ExpectedOverrides = { [K in keyof ExpectedImage]?: ExpectedImage[K] | undefined };

/** Provenance file the playbook writes into the image, KEY=value lines like os-release. */
export const RELEASE_FILE_PATH = '/etc/kube-image-release';

/** Keys every image must carry in /etc/kube-image-release (written by the playbook's release role). */
export const RELEASE_FILE_REQUIRED_KEYS = ['IMAGE_NAME', 'IMAGE_VERSION', 'GIT_COMMIT', 'BUILD_DATE', 'KUBERNETES_VERSION'] as const;

/** Keys read when present: they let verify work from the image alone, without manifest.json. */
export const RELEASE_FILE_OPTIONAL_KEYS = [
  'BASE_IMAGE_URL',
  'BASE_IMAGE_SHA256',
  'OS_FAMILY',
  'KUBERNETES_INSTALLED',
  'KUBERNETES_SKIPPED_REASON',
  'SELINUX',
  'FIREWALL',
] as const;

/** Node settings of the embedded default image.yaml, used when neither source states them. */
const DEFAULT_NODE = { selinux: 'permissive', firewall: true } as const;

/**
 * Parses KEY=value lines as a POSIX shell would read the values (the playbook quotes them with
 * Ansible's `quote`, e.g. `'it'"'"'s'`): single quotes, double quotes with backslash escapes, and
 * bare backslashes. `#` lines are comments; later keys win; malformed lines are ignored.
 */
export function parseReleaseFile(text: string): Record<string, string> {
  const values: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (match === null) continue;
    const value = unquoteShellWord(match[2] as string);
    if (value !== undefined) values[match[1] as string] = value;
  }
  return values;
}

/** One shell word without expansion; undefined when the quoting is unbalanced. */
function unquoteShellWord(word: string): string | undefined {
  let out = '';
  let i = 0;
  while (i < word.length) {
    const ch = word[i] as string;
    if (ch === "'") {
      const end = word.indexOf("'", i + 1);
      if (end < 0) return undefined;
      out += word.slice(i + 1, end);
      i = end + 1;
    } else if (ch === '"') {
      i += 1;
      for (;;) {
        if (i >= word.length) return undefined;
        const c = word[i] as string;
        if (c === '"') break;
        if (c === '\\' && i + 1 < word.length && '"\\$`'.includes(word[i + 1] as string)) {
          out += word[i + 1];
          i += 2;
        } else {
          out += c;
          i += 1;
        }
      }
      i += 1;
    } else if (ch === '\\' && i + 1 < word.length) {
      out += word[i + 1];
      i += 2;
    } else if (/\s/.test(ch)) {
      // An unquoted blank ends the word (a trailing comment may follow).
      break;
    } else {
      out += ch;
      i += 1;
    }
  }
  return out;
}

/**
 * Derives the expectation from an artifact's manifest.json, parsed through the manifest schema
 * the export wrote it with (src/core/build-facts.ts): a manifest that does not parse is an error
 * that names its problems, not a guess. `overrides` (from image.yaml or the command line) replace
 * what it says.
 */
export function expectedFromManifest(manifest: unknown, overrides: ExpectedOverrides = {}, source = 'manifest.json'): ExpectedImage {
  const parsed = parseBuildManifest(manifest, source);
  const facts = factsFromManifest(parsed);
  const found: Partial<ExpectedImage> = {
    osFamily: facts.base.osFamily,
    kubernetesVersion: facts.kubernetes.version,
    kubernetesInstalled: parsed.kubernetes.installed,
    selinux: facts.node.selinux,
    firewall: facts.node.firewall,
    imageVersion: facts.image.version,
  };
  if (parsed.kubernetes.skippedReason !== null) found.kubernetesSkippedReason = parsed.kubernetes.skippedReason;
  return completeExpected({ ...found, ...definedOnly(overrides) }, source);
}

/**
 * Derives the expectation from the image's own /etc/kube-image-release, for artifacts verified
 * without their manifest. Same tolerance and the same two hard requirements as the manifest path.
 */
export function expectedFromRelease(text: string, overrides: ExpectedOverrides = {}): ExpectedImage {
  const values = parseReleaseFile(text);
  const found: Partial<ExpectedImage> = {};
  const family = asOsFamily(values['OS_FAMILY']);
  if (family !== undefined) found.osFamily = family;
  const version = asVersion(values['KUBERNETES_VERSION']);
  if (version !== undefined) found.kubernetesVersion = version;
  const installed = asBooleanText(values['KUBERNETES_INSTALLED']);
  if (installed !== undefined) found.kubernetesInstalled = installed;
  const reason = values['KUBERNETES_SKIPPED_REASON'];
  if (reason !== undefined && reason !== '') found.kubernetesSkippedReason = reason;
  const selinux = asSelinux(values['SELINUX']);
  if (selinux !== undefined) found.selinux = selinux;
  const firewall = asBooleanText(values['FIREWALL']);
  if (firewall !== undefined) found.firewall = firewall;
  const imageVersion = values['IMAGE_VERSION'];
  if (imageVersion !== undefined && imageVersion !== '') found.imageVersion = imageVersion;
  return completeExpected({ ...found, ...definedOnly(overrides) }, RELEASE_FILE_PATH);
}

function completeExpected(partial: Partial<ExpectedImage>, source: string): ExpectedImage {
  const missing: string[] = [];
  if (partial.osFamily === undefined) missing.push('the OS family');
  if (partial.kubernetesVersion === undefined) missing.push('the Kubernetes version');
  if (partial.osFamily === undefined || partial.kubernetesVersion === undefined) {
    throw new KibError('VERIFY_EXPECTATION_UNKNOWN', `Could not tell from ${source} ${missing.join(' or ')} the image is supposed to have`, {
      hint: 'Pass the build definition (image.yaml) the artifact was built from, or verify the artifact next to its manifest.json.',
    });
  }
  const installed = partial.kubernetesInstalled ?? true;
  const expected: ExpectedImage = {
    osFamily: partial.osFamily,
    kubernetesVersion: partial.kubernetesVersion,
    kubernetesInstalled: installed,
    kubernetesSkippedReason: installed ? null : (partial.kubernetesSkippedReason ?? 'the build recorded no reason'),
    selinux: partial.selinux ?? DEFAULT_NODE.selinux,
    firewall: partial.firewall ?? DEFAULT_NODE.firewall,
  };
  if (partial.imageVersion !== undefined) expected.imageVersion = partial.imageVersion;
  if (partial.diskGrownToBytes !== undefined) expected.diskGrownToBytes = partial.diskGrownToBytes;
  return expected;
}

/** Maps an os-release ID to the family whose package tools and unit names the checks use. */
export function osFamilyFromId(id: string | undefined): OsFamily | undefined {
  if (id === undefined) return undefined;
  if (['rocky', 'rhel', 'centos', 'almalinux', 'fedora', 'ol'].includes(id)) return 'redhat';
  if (['debian', 'ubuntu'].includes(id)) return 'debian';
  return undefined;
}

function definedOnly(value: ExpectedOverrides): Partial<ExpectedImage> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<ExpectedImage>;
}

function asString(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function asVersion(value: unknown): string | undefined {
  const text = asString(value);
  if (text === undefined) return undefined;
  const match = /^v?(\d+\.\d+\.\d+)$/.exec(text.trim());
  return match === null ? undefined : match[1];
}

function asOsFamily(value: unknown): OsFamily | undefined {
  return value === 'redhat' || value === 'debian' ? value : undefined;
}

function asSelinux(value: unknown): 'permissive' | 'enforcing' | undefined {
  return value === 'permissive' || value === 'enforcing' ? value : undefined;
}

function asBooleanText(value: string | undefined): boolean | undefined {
  if (value === undefined) return undefined;
  const lower = value.toLowerCase();
  if (['true', 'yes', '1'].includes(lower)) return true;
  if (['false', 'no', '0'].includes(lower)) return false;
  return undefined;
}
