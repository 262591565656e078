// Types for scripts/fixture.mjs (plain JavaScript so that `npm run fixture` runs on Node 20).

export declare const FIXTURE_NAME: 'debian-12';
export declare const IMAGE_FILE: 'debian-12.qcow2';
export declare const RECIPE_VERSION: number;
export declare const repoRoot: string;
export declare const recipeDir: string;

/** What the fixture image is made from; its canonical JSON's sha256 is the cache key. */
export interface FixtureRecipe {
  recipeVersion: number;
  name: string;
  files: { path: string; sha256: string }[];
  packages: string[];
}

export interface FixturePaths {
  fixturesDir: string;
  entryDir: string;
  imagePath: string;
  checksumPath: string;
  recipePath: string;
  lockPath: string;
  tempPrefix: string;
  logPath: string;
  linkPath: string;
}

export interface EnsureFixtureOptions {
  cacheDir?: string;
  stateDir?: string;
  repoRoot?: string;
  recipeDir?: string;
  env?: NodeJS.ProcessEnv;
  /** Receives every progress line; default: stderr. */
  log?: (line: string) => void;
  signal?: AbortSignal;
}

export declare function parsePackageList(text: string): string[];
export declare function readRecipe(dir?: string): Promise<FixtureRecipe>;
export declare function canonicalJson(value: unknown): string;
export declare function recipeKey(recipe: FixtureRecipe): string;
export declare function diffRecipes(previous: FixtureRecipe, current: FixtureRecipe): string[];
export declare function resolveCacheDir(env?: NodeJS.ProcessEnv, home?: string): string;
export declare function resolveStateDir(env?: NodeJS.ProcessEnv, home?: string): string;
export declare function fixturePaths(
  dirs: { cacheDir: string; stateDir: string; repoRoot?: string },
  key: string,
): FixturePaths;
export declare function ensureDebianFixture(options?: EnsureFixtureOptions): Promise<string>;
