import { createHash } from 'node:crypto';
import { KibError } from '../core/errors.js';
import { compareBytes } from './hash.js';
import type { ExportMeta, GuestInventory } from './types.js';

export const SBOM_FILE = 'sbom.cdx.json';

export type SbomMeta = Pick<ExportMeta, 'facts'> & {
  /** sha256 of the final qcow2: the SBOM describes exactly this disk. */
  diskSha256: string;
};

interface CdxHash {
  alg: 'SHA-256';
  content: string;
}

interface CdxProperty {
  name: string;
  value: string;
}

export interface CdxComponent {
  type: 'operating-system' | 'library' | 'application' | 'container';
  'bom-ref': string;
  name: string;
  version?: string;
  description?: string;
  hashes?: CdxHash[];
  purl?: string;
  properties?: CdxProperty[];
}

/** The subset of CycloneDX 1.5 JSON that we write. */
export interface CycloneDxBom {
  $schema: string;
  bomFormat: 'CycloneDX';
  specVersion: '1.5';
  serialNumber: string;
  version: 1;
  metadata: {
    timestamp: string;
    tools: { components: CdxComponent[] };
    component: CdxComponent;
    properties: CdxProperty[];
  };
  components: CdxComponent[];
}

/**
 * A CycloneDX 1.5 SBOM of the image: every guest package (rpm or deb purl), the Kubernetes
 * binaries with their SHA-256, and the pre-pulled container images (oci purl with digest).
 * Equal inputs give equal bytes: the serial number is derived from the disk's sha256, the
 * timestamp is the build date and components are sorted.
 */
export function buildSbom(inventory: GuestInventory, meta: SbomMeta): CycloneDxBom {
  if (!/^[0-9a-f]{64}$/.test(meta.diskSha256)) throw new KibError('EXPORT_INVALID', `disk sha256 '${meta.diskSha256}' is not 64 hex digits`);
  const distro = `${inventory.os.id.toLowerCase()}-${inventory.os.versionId}`;
  const components: CdxComponent[] = [];
  const seen = new Set<string>();
  const add = (component: CdxComponent): void => {
    // rpm databases can list the same name-version-arch twice (gpg-pubkey); one entry is enough.
    if (seen.has(component['bom-ref'])) return;
    seen.add(component['bom-ref']);
    components.push(component);
  };

  add({
    type: 'operating-system',
    'bom-ref': `os:${distro}`,
    name: inventory.os.id,
    version: inventory.os.versionId,
    description: inventory.os.prettyName,
  });

  const packages = [...inventory.packages].sort(
    (a, b) => compareBytes(a.name, b.name) || compareBytes(a.version, b.version) || compareBytes(a.arch, b.arch),
  );
  for (const pkg of packages) {
    const purl = packagePurl(pkg, inventory.os.id, distro);
    add({ type: 'library', 'bom-ref': purl, name: pkg.name, version: pkg.version, purl });
  }

  const binaries = [...inventory.binaries].sort((a, b) => compareBytes(a.name, b.name) || compareBytes(a.path, b.path));
  for (const binary of binaries) {
    add({
      type: 'application',
      'bom-ref': `file:${binary.path}`,
      name: binary.name,
      version: binary.version,
      hashes: [sha256Hash(binary.sha256, binary.path)],
      properties: [{ name: 'kube-image-builder:path', value: binary.path }],
    });
  }

  const images = [...inventory.images].sort((a, b) => compareBytes(a.ref, b.ref));
  for (const image of images) {
    const parsed = parseImageRef(image.ref);
    const digest = image.digest === '' ? parsed.digest : image.digest;
    if (digest === undefined) throw new KibError('EXPORT_INVALID', `pre-pulled image ${image.ref} has no digest`);
    const match = /^sha256:([0-9a-f]{64})$/.exec(digest);
    if (match?.[1] === undefined) throw new KibError('EXPORT_INVALID', `digest of ${image.ref} is '${digest}', expected sha256:<64 hex>`);
    const purl = ociPurl(parsed, digest);
    add({
      type: 'container',
      'bom-ref': purl,
      name: parsed.repository,
      version: parsed.tag ?? digest,
      hashes: [{ alg: 'SHA-256', content: match[1] }],
      purl,
      properties: [{ name: 'kube-image-builder:image-ref', value: image.ref }],
    });
  }

  const { facts } = meta;
  const tool: CdxComponent = {
    type: 'application',
    'bom-ref': `tool:${facts.tool.name}@${facts.tool.version}`,
    name: facts.tool.name,
    version: facts.tool.version,
  };
  return {
    $schema: 'http://cyclonedx.org/schema/bom-1.5.schema.json',
    bomFormat: 'CycloneDX',
    specVersion: '1.5',
    serialNumber: `urn:uuid:${uuidV5(URL_NAMESPACE, `urn:kube-image-builder:sbom:sha256:${meta.diskSha256}`)}`,
    version: 1,
    metadata: {
      // The build date, so the SBOM does not change with the time it was written.
      timestamp: facts.build.date,
      tools: { components: [tool] },
      component: {
        type: 'operating-system',
        'bom-ref': `image:${facts.image.name}@${facts.image.version}`,
        name: facts.image.name,
        version: facts.image.version,
        description: `Kubernetes ${facts.kubernetes.version} node image`,
        hashes: [sha256Hash(meta.diskSha256, 'the disk')],
        properties: [
          ...(facts.image.commit === null ? [] : [{ name: 'kube-image-builder:git-commit', value: facts.image.commit }]),
          { name: 'kube-image-builder:kubernetes-version', value: facts.kubernetes.version },
        ],
      },
      properties: [
        { name: 'kube-image-builder:base-url', value: facts.base.url },
        { name: 'kube-image-builder:base-sha256', value: facts.base.sha256 },
        { name: 'kube-image-builder:kubernetes-installed', value: String(inventory.kubernetes.installed) },
        ...(inventory.kubernetes.skippedReason === null
          ? []
          : [{ name: 'kube-image-builder:kubernetes-skipped-reason', value: inventory.kubernetes.skippedReason }]),
      ],
    },
    components,
  };
}

/** `pkg:rpm/<distro-id>/<name>@<version>?arch=…` or `pkg:deb/<distro-id>/…`, per the purl type rules. */
export function packagePurl(
  pkg: { name: string; version: string; arch: string; manager: 'rpm' | 'dpkg' },
  osId: string,
  distro: string,
): string {
  const namespace = encodePurl(osId.toLowerCase());
  if (pkg.manager === 'rpm') {
    // rpm purls carry the epoch as a qualifier, not in the version.
    const epochMatch = /^(\d+):(.*)$/.exec(pkg.version);
    const version = epochMatch?.[2] ?? pkg.version;
    const qualifiers: [string, string][] = [['arch', pkg.arch], ['distro', distro]];
    if (epochMatch?.[1] !== undefined && epochMatch[1] !== '0') qualifiers.push(['epoch', epochMatch[1]]);
    return `pkg:rpm/${namespace}/${encodePurl(pkg.name)}@${encodePurl(version)}${renderQualifiers(qualifiers)}`;
  }
  // deb purls keep the epoch in the version.
  return `pkg:deb/${namespace}/${encodePurl(pkg.name)}@${encodePurl(pkg.version, ':')}${renderQualifiers([
    ['arch', pkg.arch],
    ['distro', distro],
  ])}`;
}

export interface ImageRef {
  /** Registry host, e.g. `registry.k8s.io`, `docker.io`. */
  registry: string;
  /** Repository path without the registry, e.g. `kube-apiserver`, `library/nginx`. */
  path: string;
  /** `registry/path`. */
  repository: string;
  /** Last path segment, lowercased: the purl name. */
  name: string;
  tag: string | undefined;
  digest: string | undefined;
}

/** Splits `host[:port]/path[:tag][@digest]`; short Docker Hub names get `docker.io/library/`. */
export function parseImageRef(ref: string): ImageRef {
  let rest = ref.trim();
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  const slash = rest.indexOf('/');
  const first = slash === -1 ? '' : rest.slice(0, slash);
  const hasRegistry = first !== '' && (first.includes('.') || first.includes(':') || first === 'localhost');
  const registry = hasRegistry ? first : 'docker.io';
  let path = hasRegistry ? rest.slice(slash + 1) : rest;
  if (registry === 'docker.io' && !path.includes('/')) path = `library/${path}`;
  if (path === '' || tag === '' || digest === '') throw new KibError('EXPORT_INVALID', `'${ref}' is not an image reference`);
  const name = (path.split('/').pop() ?? path).toLowerCase();
  return { registry, path, repository: `${registry}/${path}`, name, tag, digest };
}

/** `pkg:oci/<name>@sha256%3A…?repository_url=<registry/path>&tag=<tag>`. */
export function ociPurl(ref: ImageRef, digest: string): string {
  const qualifiers: [string, string][] = [['repository_url', ref.repository]];
  if (ref.tag !== undefined) qualifiers.push(['tag', ref.tag]);
  return `pkg:oci/${encodePurl(ref.name)}@${encodePurl(digest)}${renderQualifiers(qualifiers)}`;
}

function renderQualifiers(qualifiers: [string, string][]): string {
  const present = qualifiers.filter(([, value]) => value !== '').sort(([a], [b]) => compareBytes(a, b));
  if (present.length === 0) return '';
  return `?${present.map(([key, value]) => `${key}=${encodePurl(value, ':/')}`).join('&')}`;
}

// purl percent-encodes everything but unreserved characters; encodeURIComponent leaves !'()* alone.
function encodePurl(text: string, keep = ''): string {
  let out = encodeURIComponent(text).replace(/[!'()*]/g, (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`);
  for (const char of keep) out = out.split(encodeURIComponent(char)).join(char);
  return out;
}

function sha256Hash(hex: string, what: string): CdxHash {
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new KibError('EXPORT_INVALID', `sha256 of ${what} is '${hex}', expected 64 lowercase hex digits`);
  return { alg: 'SHA-256', content: hex };
}

// RFC 4122 name-based UUIDs (version 5, SHA-1) under the URL namespace.
const URL_NAMESPACE = '6ba7b811-9dad-11d1-80b4-00c04fd430c8';

export function uuidV5(namespace: string, name: string): string {
  const ns = Buffer.from(namespace.replace(/-/g, ''), 'hex');
  const bytes = createHash('sha1').update(ns).update(name, 'utf8').digest().subarray(0, 16);
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x50;
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
