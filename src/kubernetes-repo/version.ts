/**
 * Version ordering of the two package formats pkgs.k8s.io publishes, so that "the newest" means
 * what dnf and apt mean by it. The algorithms follow the package managers' documented rules:
 * rpm's segment comparison (rpmvercmp: alternating digit and letter runs, `~` sorts before
 * anything, `^` after the end) and Debian policy §5.6.12 for `Version:` (epoch, upstream
 * version, revision; `~` sorts before the end of a part).
 */

/** A package version split the way its format splits it. */
export interface PackageVersion {
  epoch: number;
  /** rpm `ver`, Debian upstream version: `1.37.2`. */
  version: string;
  /** rpm `rel`, Debian revision: `150500.1.1`, `1.1`; empty when there is none. */
  release: string;
}

/** rpm's comparison of one version or release string: negative, 0 or positive like a sort function. */
export function rpmVersionCompare(a: string, b: string): number {
  if (a === b) return 0;
  let i = 0;
  let j = 0;
  const isAlnum = (c: string | undefined): boolean => c !== undefined && /[0-9A-Za-z]/.test(c);
  for (;;) {
    while (i < a.length && !isAlnum(a[i]) && a[i] !== '~' && a[i] !== '^') i += 1;
    while (j < b.length && !isAlnum(b[j]) && b[j] !== '~' && b[j] !== '^') j += 1;
    // A tilde makes its side older than anything else, even the end of the string.
    if (a[i] === '~' || b[j] === '~') {
      if (a[i] !== '~') return 1;
      if (b[j] !== '~') return -1;
      i += 1;
      j += 1;
      continue;
    }
    // A caret makes its side newer than the end of the string but older than any other segment.
    if (a[i] === '^' || b[j] === '^') {
      if (i >= a.length) return -1;
      if (j >= b.length) return 1;
      if (a[i] !== '^') return 1;
      if (b[j] !== '^') return -1;
      i += 1;
      j += 1;
      continue;
    }
    if (i >= a.length || j >= b.length) break;
    const numeric = /[0-9]/.test(a[i] as string);
    const run = numeric ? /^[0-9]+/ : /^[A-Za-z]+/;
    const segA = run.exec(a.slice(i))?.[0] ?? '';
    const segB = run.exec(b.slice(j))?.[0] ?? '';
    i += segA.length;
    j += segB.length;
    // Segments of different kinds: a number is newer than letters.
    if (segB === '') return numeric ? 1 : -1;
    if (numeric) {
      const x = segA.replace(/^0+/, '');
      const y = segB.replace(/^0+/, '');
      if (x.length !== y.length) return x.length - y.length;
      if (x !== y) return x < y ? -1 : 1;
    } else if (segA !== segB) {
      return segA < segB ? -1 : 1;
    }
  }
  if (i >= a.length && j >= b.length) return 0;
  return i >= a.length ? -1 : 1;
}

/** dpkg's ordering of one upstream version or revision (Debian policy §5.6.12). */
export function debianPartCompare(a: string, b: string): number {
  // Letters sort before non-letters, `~` before everything including the end of the part.
  const order = (c: string | undefined): number => {
    if (c === undefined || /[0-9]/.test(c)) return 0;
    if (/[A-Za-z]/.test(c)) return c.charCodeAt(0);
    if (c === '~') return -1;
    return c.charCodeAt(0) + 256;
  };
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    while ((i < a.length && !/[0-9]/.test(a[i] as string)) || (j < b.length && !/[0-9]/.test(b[j] as string))) {
      const x = order(a[i]);
      const y = order(b[j]);
      if (x !== y) return x - y;
      i += 1;
      j += 1;
    }
    while (a[i] === '0') i += 1;
    while (b[j] === '0') j += 1;
    let firstDifference = 0;
    while (i < a.length && /[0-9]/.test(a[i] as string) && j < b.length && /[0-9]/.test(b[j] as string)) {
      if (firstDifference === 0) firstDifference = (a.charCodeAt(i) - b.charCodeAt(j));
      i += 1;
      j += 1;
    }
    if (i < a.length && /[0-9]/.test(a[i] as string)) return 1;
    if (j < b.length && /[0-9]/.test(b[j] as string)) return -1;
    if (firstDifference !== 0) return firstDifference;
  }
  return 0;
}

/** `[epoch:]upstream[-revision]`, split at the first colon and the last hyphen. */
export function parseDebianVersion(text: string): PackageVersion {
  const trimmed = text.trim();
  const colon = trimmed.indexOf(':');
  const epoch = colon > 0 && /^\d+$/.test(trimmed.slice(0, colon)) ? Number(trimmed.slice(0, colon)) : 0;
  const rest = colon > 0 && /^\d+$/.test(trimmed.slice(0, colon)) ? trimmed.slice(colon + 1) : trimmed;
  const hyphen = rest.lastIndexOf('-');
  return hyphen === -1 ? { epoch, version: rest, release: '' } : { epoch, version: rest.slice(0, hyphen), release: rest.slice(hyphen + 1) };
}

export function compareRpmVersions(a: PackageVersion, b: PackageVersion): number {
  if (a.epoch !== b.epoch) return a.epoch - b.epoch;
  return rpmVersionCompare(a.version, b.version) || rpmVersionCompare(a.release, b.release);
}

export function compareDebianVersions(a: PackageVersion, b: PackageVersion): number {
  if (a.epoch !== b.epoch) return a.epoch - b.epoch;
  return debianPartCompare(a.version, b.version) || debianPartCompare(a.release, b.release);
}

/**
 * How the package manager is told this exact version: `1.37.2-150500.1.1` for dnf
 * (`kubeadm-1.37.2-150500.1.1`) and apt (`kubeadm=1.37.2-1.1`); an epoch other than 0 is written
 * in front (`1:…`), as both accept it.
 */
export function renderPackageVersion(version: PackageVersion): string {
  const core = version.release === '' ? version.version : `${version.version}-${version.release}`;
  return version.epoch === 0 ? core : `${String(version.epoch)}:${core}`;
}
