/**
 * Checksum files as distributions publish them: GNU coreutils style (`<hex>  <name>` or
 * `<hex> *<name>`, as `sha256sum` writes) and BSD style (`SHA256 (<name>) = <hex>`, as Rocky
 * Linux and Fedora write), possibly wrapped in a PGP clear-signature. Only SHA-256 entries are
 * read; other algorithms in the same file are ignored.
 */

const BSD_LINE = /^SHA256\s*\((.+)\)\s*=\s*([0-9a-fA-F]{64})$/;
const GNU_LINE = /^\\?([0-9a-fA-F]{64})[ \t]+\*?(.+)$/;

/** File name → lowercase sha256 for every SHA-256 entry in the file. */
export function parseChecksumFile(text: string): Map<string, string> {
  const entries = new Map<string, string>();
  let inSignature = false;
  let inArmorHeader = false;
  for (const rawLine of text.split('\n')) {
    let line = rawLine.replace(/\r$/, '').trim();
    if (line === '-----BEGIN PGP SIGNED MESSAGE-----') {
      // Armor headers ("Hash: SHA256") follow until the first empty line.
      inArmorHeader = true;
      continue;
    }
    if (inArmorHeader) {
      if (line === '') inArmorHeader = false;
      continue;
    }
    if (line === '-----BEGIN PGP SIGNATURE-----') {
      inSignature = true;
      continue;
    }
    if (line === '-----END PGP SIGNATURE-----') {
      inSignature = false;
      continue;
    }
    if (inSignature) continue;
    // Clear-signing escapes lines that start with "-" by prefixing "- ".
    if (line.startsWith('- ')) line = line.slice(2);
    if (line === '' || line.startsWith('#')) continue;

    const bsd = BSD_LINE.exec(line);
    if (bsd !== null) {
      entries.set(normalizeName(bsd[1] ?? ''), (bsd[2] ?? '').toLowerCase());
      continue;
    }
    const gnu = GNU_LINE.exec(line);
    if (gnu !== null) entries.set(normalizeName(gnu[2] ?? ''), (gnu[1] ?? '').toLowerCase());
  }
  return entries;
}

/**
 * The sha256 a checksum file lists for `fileName`. An entry written with a directory
 * (`./images/x.qcow2`) matches by its last path component when there is no exact entry.
 */
export function findChecksum(text: string, fileName: string): string | undefined {
  const entries = parseChecksumFile(text);
  const exact = entries.get(normalizeName(fileName));
  if (exact !== undefined) return exact;
  for (const [name, hex] of entries) {
    if (baseName(name) === fileName) return hex;
  }
  return undefined;
}

function normalizeName(name: string): string {
  return name.trim().replace(/^\.\//, '');
}

function baseName(name: string): string {
  const slash = name.lastIndexOf('/');
  return slash === -1 ? name : name.slice(slash + 1);
}
