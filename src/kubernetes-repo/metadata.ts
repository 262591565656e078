import { type PackageVersion, parseDebianVersion } from './version.js';

/** One package build a repository offers. */
export interface RepoPackage {
  name: string;
  arch: string;
  version: PackageVersion;
}

/**
 * The location of the `primary` metadata in an rpm repository's `repodata/repomd.xml`, relative
 * to the repository root (the directory that holds `repodata/`), e.g.
 * `repodata/<hash>-primary.xml.gz`. Undefined when repomd.xml lists none.
 */
export function parseRepomdPrimaryHref(xml: string): string | undefined {
  for (const block of xml.matchAll(/<data\b([^>]*)>([\s\S]*?)<\/data>/g)) {
    if (attribute(block[1] ?? '', 'type') !== 'primary') continue;
    const location = /<location\b([^>]*)\/?>/.exec(block[2] ?? '');
    const href = location === null ? undefined : attribute(location[1] ?? '', 'href');
    if (href !== undefined && href !== '') return href;
  }
  return undefined;
}

/** Every package in an rpm repository's primary.xml: name, arch, epoch, version and release. */
export function parseRpmPrimary(xml: string): RepoPackage[] {
  const packages: RepoPackage[] = [];
  for (const block of xml.matchAll(/<package\b[^>]*>([\s\S]*?)<\/package>/g)) {
    const body = block[1] ?? '';
    const name = /<name>([^<]*)<\/name>/.exec(body)?.[1];
    const arch = /<arch>([^<]*)<\/arch>/.exec(body)?.[1];
    const versionAttributes = /<version\b([^>]*)\/?>/.exec(body)?.[1];
    if (name === undefined || arch === undefined || versionAttributes === undefined) continue;
    const ver = attribute(versionAttributes, 'ver');
    if (ver === undefined) continue;
    const epoch = Number(attribute(versionAttributes, 'epoch') ?? '0');
    packages.push({
      name: unescapeXml(name.trim()),
      arch: arch.trim(),
      version: { epoch: Number.isInteger(epoch) ? epoch : 0, version: unescapeXml(ver), release: unescapeXml(attribute(versionAttributes, 'rel') ?? '') },
    });
  }
  return packages;
}

/** Every package in a Debian `Packages` index (deb822 paragraphs separated by blank lines). */
export function parseDebianPackages(text: string): RepoPackage[] {
  const packages: RepoPackage[] = [];
  for (const paragraph of text.replace(/\r\n/g, '\n').split(/\n[ \t]*\n/)) {
    const fields = new Map<string, string>();
    for (const line of paragraph.split('\n')) {
      // Continuation lines (Description) start with white space; the fields used here are single-line.
      const match = /^([A-Za-z0-9-]+):[ \t]*(.*)$/.exec(line);
      if (match !== null) fields.set((match[1] as string).toLowerCase(), (match[2] as string).trim());
    }
    const name = fields.get('package');
    const version = fields.get('version');
    const arch = fields.get('architecture');
    if (name === undefined || version === undefined || arch === undefined) continue;
    packages.push({ name, arch, version: parseDebianVersion(version) });
  }
  return packages;
}

function attribute(attributes: string, name: string): string | undefined {
  const match = new RegExp(`(?:^|\\s)${name}\\s*=\\s*(?:"([^"]*)"|'([^']*)')`).exec(attributes);
  if (match === null) return undefined;
  return unescapeXml(match[1] ?? match[2] ?? '');
}

function unescapeXml(text: string): string {
  return text
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&#(\d+);/g, (_, code: string) => String.fromCodePoint(Number(code)))
    .replace(/&amp;/g, '&');
}
