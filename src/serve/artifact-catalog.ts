import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readFile, realpath, stat } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { isPlainFileName, parseSha256Sums } from './sha256sums.js';

/** A file the server may hand out: it was found by scanning, never by joining a request path. */
export interface CatalogEntry {
  /** The URL path it is served at: `/<stem>/<file>`, or `/<file>` when DIR is itself an artifact dir. */
  urlPath: string;
  /** Symlink-free absolute path inside the served directory. */
  filePath: string;
  sha256: string;
  sizeBytes: number;
  mtimeMs: number;
  dev: number;
  ino: number;
}

const SUMS_FILE = 'SHA256SUMS';
/**
 * Written next to SHA256SUMS by the export phase but not listed in it (they describe the listed
 * files). They are served too, with a digest we compute once. Any other unlisted file may be
 * half-written and stays invisible.
 */
const COMPANION_FILES = [SUMS_FILE, 'manifest.json', 'sbom.cdx.json'];

/**
 * The set of finished artifacts in an output directory. An artifact directory counts as finished
 * when it holds a SHA256SUMS file: the export phase writes that in staging and renames the whole
 * directory into place at once. Staging directories and dotfiles are never looked at.
 */
export class ArtifactCatalog {
  readonly root: string;
  #entries = new Map<string, CatalogEntry>();
  #refreshing: Promise<void> | undefined;
  #lastRefreshMs = 0;
  readonly #minRefreshIntervalMs: number;

  private constructor(root: string, minRefreshIntervalMs: number) {
    this.root = root;
    this.#minRefreshIntervalMs = minRefreshIntervalMs;
  }

  static async open(dir: string, options: { minRefreshIntervalMs?: number } = {}): Promise<ArtifactCatalog> {
    const root = await realpath(dir);
    if (!(await stat(root)).isDirectory()) throw new Error(`${dir} is not a directory`);
    const catalog = new ArtifactCatalog(root, options.minRefreshIntervalMs ?? 1000);
    await catalog.refresh();
    return catalog;
  }

  list(): CatalogEntry[] {
    return [...this.#entries.values()].sort((a, b) => a.urlPath.localeCompare(b.urlPath));
  }

  get(urlPath: string): CatalogEntry | undefined {
    return this.#entries.get(urlPath);
  }

  /**
   * Looks a path up, rescanning (at most once per interval) when it is unknown, so artifacts that
   * finish while the server runs become visible without a restart.
   */
  async find(urlPath: string): Promise<CatalogEntry | undefined> {
    const known = this.#entries.get(urlPath);
    if (known !== undefined) return known;
    await this.refreshIfStale();
    return this.#entries.get(urlPath);
  }

  /** Rescans unless the last scan is more recent than the minimum interval. */
  async refreshIfStale(): Promise<void> {
    if (performance.now() - this.#lastRefreshMs >= this.#minRefreshIntervalMs) await this.refresh();
  }

  /** Rescans the directory; concurrent callers share one scan. */
  refresh(): Promise<void> {
    this.#refreshing ??= this.#scan().finally(() => {
      this.#lastRefreshMs = performance.now();
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  async #scan(): Promise<void> {
    const previous = this.#entries;
    const next = new Map<string, CatalogEntry>();
    const dirs: { prefix: string; path: string }[] = [{ prefix: '', path: this.root }];
    for (const name of await readdir(this.root)) {
      if (!isPlainFileName(name)) continue;
      const real = await this.#resolveInside(join(this.root, name));
      if (real === undefined) continue;
      const info = await stat(real).catch(() => undefined);
      if (info?.isDirectory() === true) dirs.push({ prefix: `/${name}`, path: real });
    }
    for (const dir of dirs) await this.#scanArtifactDir(dir.prefix, dir.path, previous, next);
    this.#entries = next;
  }

  async #scanArtifactDir(
    prefix: string,
    dir: string,
    previous: ReadonlyMap<string, CatalogEntry>,
    next: Map<string, CatalogEntry>,
  ): Promise<void> {
    const sumsPath = await this.#resolveInside(join(dir, SUMS_FILE));
    if (sumsPath === undefined) return;
    const sumsText = await readFile(sumsPath, 'utf8').catch(() => undefined);
    if (sumsText === undefined) return;
    const listed = new Map(parseSha256Sums(sumsText).map((entry) => [entry.name, entry.sha256]));
    const names = new Set([...listed.keys(), ...COMPANION_FILES]);
    for (const name of names) {
      const filePath = await this.#resolveInside(join(dir, name));
      if (filePath === undefined) continue;
      const info = await stat(filePath).catch(() => undefined);
      if (info === undefined || !info.isFile()) continue;
      const urlPath = `${prefix}/${name}`;
      const identity = { sizeBytes: info.size, mtimeMs: info.mtimeMs, dev: info.dev, ino: info.ino };
      let sha256 = listed.get(name);
      if (sha256 === undefined) {
        const before = previous.get(urlPath);
        sha256 = before !== undefined && sameIdentity(before, identity) ? before.sha256 : await sha256File(filePath);
      }
      next.set(urlPath, { urlPath, filePath, sha256, ...identity });
    }
  }

  /**
   * The symlink-free path of `path` if it exists and lies inside the served root; undefined for
   * anything missing or escaping it (a symlink to /etc, a bind of `..`).
   */
  async #resolveInside(path: string): Promise<string | undefined> {
    const linkInfo = await lstat(path).catch(() => undefined);
    if (linkInfo === undefined) return undefined;
    const real = await realpath(path).catch(() => undefined);
    if (real === undefined) return undefined;
    return real.startsWith(this.root + sep) ? real : undefined;
  }
}

export function sameIdentity(
  a: Pick<CatalogEntry, 'sizeBytes' | 'mtimeMs' | 'dev' | 'ino'>,
  b: Pick<CatalogEntry, 'sizeBytes' | 'mtimeMs' | 'dev' | 'ino'>,
): boolean {
  return a.sizeBytes === b.sizeBytes && a.mtimeMs === b.mtimeMs && a.dev === b.dev && a.ino === b.ino;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
