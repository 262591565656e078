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

/**
 * Keys every image must carry in /etc/kube-image-release. They are the upper-cased names of the
 * kib_* variables the engine passes to the playbook, so the template is a plain mapping.
 */
export const RELEASE_FILE_REQUIRED_KEYS = [
  'KIB_IMAGE_NAME',
  'KIB_IMAGE_VERSION',
  'KIB_GIT_COMMIT',
  'KIB_BUILD_DATE',
  'KIB_KUBERNETES_VERSION',
] as const;

/** Keys read when present: they let verify work from the image alone, without manifest.json. */
export const RELEASE_FILE_OPTIONAL_KEYS = [
  'KIB_OS_FAMILY',
  'KIB_BASE_SHA256',
  'KIB_SELINUX',
  'KIB_FIREWALL',
  'KIB_KUBERNETES_INSTALLED',
  'KIB_KUBERNETES_SKIPPED_REASON',
] as const;

/** Node settings of the embedded default image.yaml, used when neither source states them. */
const DEFAULT_NODE = { selinux: 'permissive', firewall: true } as const;

/**
 * Parses KEY=value lines (os-release syntax: `#` comments, optional single or double quotes,
 * backslash escapes inside double quotes). Later keys win; malformed lines are ignored.
 */
export function parseReleaseFile(text: string): Record<string, string> {
  const values: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (match === null) continue;
    const key = match[1] as string;
    let value = (match[2] as string).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) {
      value = value.slice(1, -1).replace(/\\(["\\$`])/g, '$1');
    } else if (value.length >= 2 && value.startsWith("'") && value.endsWith("'")) {
      value = value.slice(1, -1);
    }
    values[key] = value;
  }
  return values;
}

/**
 * Derives the expectation from an artifact's manifest.json. Tolerant on purpose: manifests of
 * other schema versions, or hand-written ones, may lack fields; `overrides` (from image.yaml or
 * the command line) fill or replace anything. Fails only when the OS family or the Kubernetes
 * version cannot be found anywhere, since every check depends on those two.
 */
export function expectedFromManifest(manifest: unknown, overrides: ExpectedOverrides = {}): ExpectedImage {
  const m = asRecord(manifest);
  const image = asRecord(m['image']);
  const kubernetes = asRecord(m['kubernetes']);
  const base = asRecord(m['base']);
  const node = asRecord(m['node']);
  const guestOs = asRecord(asRecord(m['guest'])['os']);

  const found: Partial<ExpectedImage> = {};
  const family = asOsFamily(base['osFamily']) ?? asOsFamily(m['osFamily']) ?? osFamilyFromId(asString(guestOs['id']));
  if (family !== undefined) found.osFamily = family;
  const version = asVersion(image['kubernetesVersion']) ?? asVersion(kubernetes['version']);
  if (version !== undefined) found.kubernetesVersion = version;
  if (typeof kubernetes['installed'] === 'boolean') found.kubernetesInstalled = kubernetes['installed'];
  const reason = asString(kubernetes['skippedReason']);
  if (reason !== undefined) found.kubernetesSkippedReason = reason;
  const selinux = asSelinux(node['selinux']);
  if (selinux !== undefined) found.selinux = selinux;
  if (typeof node['firewall'] === 'boolean') found.firewall = node['firewall'];
  const imageVersion = asString(image['version']);
  if (imageVersion !== undefined) found.imageVersion = imageVersion;

  return completeExpected({ ...found, ...definedOnly(overrides) }, 'manifest.json');
}

/**
 * Derives the expectation from the image's own /etc/kube-image-release, for artifacts verified
 * without their manifest. Same tolerance and the same two hard requirements as the manifest path.
 */
export function expectedFromRelease(text: string, overrides: ExpectedOverrides = {}): ExpectedImage {
  const values = parseReleaseFile(text);
  const found: Partial<ExpectedImage> = {};
  const family = asOsFamily(values['KIB_OS_FAMILY']);
  if (family !== undefined) found.osFamily = family;
  const version = asVersion(values['KIB_KUBERNETES_VERSION']);
  if (version !== undefined) found.kubernetesVersion = version;
  const installed = asBooleanText(values['KIB_KUBERNETES_INSTALLED']);
  if (installed !== undefined) found.kubernetesInstalled = installed;
  const reason = values['KIB_KUBERNETES_SKIPPED_REASON'];
  if (reason !== undefined && reason !== '') found.kubernetesSkippedReason = reason;
  const selinux = asSelinux(values['KIB_SELINUX']);
  if (selinux !== undefined) found.selinux = selinux;
  const firewall = asBooleanText(values['KIB_FIREWALL']);
  if (firewall !== undefined) found.firewall = firewall;
  const imageVersion = values['KIB_IMAGE_VERSION'];
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

function asRecord(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
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
