/** One line of a SHA256SUMS file: a file name in the same directory and its digest. */
export interface Sha256SumsEntry {
  name: string;
  sha256: string;
}

const GNU_LINE = /^([0-9a-fA-F]{64}) [ *](.+)$/;
const BSD_LINE = /^SHA256 \((.+)\) = ([0-9a-fA-F]{64})$/;

/**
 * Parses SHA256SUMS text in the GNU (`sha256sum`) or BSD (`sha256sum --tag`) layout.
 * Only plain file names are kept: a name with a slash, a backslash, a leading dot or a control
 * character cannot be an artifact beside the sums file, so it is dropped rather than trusted.
 */
export function parseSha256Sums(text: string): Sha256SumsEntry[] {
  const entries: Sha256SumsEntry[] = [];
  for (const rawLine of text.split('\n')) {
    const line = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine;
    const gnu = GNU_LINE.exec(line);
    const bsd = gnu === null ? BSD_LINE.exec(line) : null;
    const name = gnu?.[2] ?? bsd?.[1];
    const sha256 = gnu?.[1] ?? bsd?.[2];
    if (name === undefined || sha256 === undefined || !isPlainFileName(name)) continue;
    entries.push({ name, sha256: sha256.toLowerCase() });
  }
  return entries;
}

export function isPlainFileName(name: string): boolean {
  return (
    name !== '' &&
    !name.startsWith('.') &&
    !name.includes('/') &&
    !name.includes('\\') &&
    // eslint-disable-next-line no-control-regex
    !/[\u0000-\u001f\u007f]/.test(name)
  );
}
