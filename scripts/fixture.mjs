// The offline Debian 12 test base image: built from Debian packages by
// test/fixtures/debian-base/build.sh, cached by the sha256 of its recipe, shared by every test run.
//
//   npm run fixture     builds or reuses it; its absolute path is the last line of stdout,
//                       progress goes to stderr.
//
// Plain JavaScript because Node 20 cannot run TypeScript; test/support/fixture.ts wraps it for
// tests. It lives outside src/, so it starts its one child process itself.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, readFileSync } from 'node:fs';
import { mkdir, open, readdir, readFile, realpath, rename, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { homedir, hostname } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const FIXTURE_NAME = 'debian-12';
export const IMAGE_FILE = `${FIXTURE_NAME}.qcow2`;
/** Bump when the way the recipe becomes an image changes outside the recipe files. */
export const RECIPE_VERSION = 1;

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const recipeDir = path.join(repoRoot, 'test', 'fixtures', 'debian-base');

const BUILD_TIMEOUT_MS = 30 * 60_000;
const LOCK_POLL_MS = 2_000;
const STOP_GRACE_MS = 15_000;

/** The package names in packages.txt: one per line, `#` starts a comment. */
export function parsePackageList(text) {
  return text
    .split('\n')
    .map((line) => line.replace(/#.*/, '').trim())
    .filter((line) => line !== '');
}

/** Every regular file under `dir` as a sorted POSIX path relative to it. */
async function listFiles(dir, prefix = '') {
  const entries = await readdir(path.join(dir, prefix), { withFileTypes: true });
  const files = [];
  for (const entry of entries) {
    const relative = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
    if (entry.isDirectory()) files.push(...(await listFiles(dir, relative)));
    else if (entry.isFile()) files.push(relative);
    else throw new Error(`${path.join(dir, relative)}: the fixture recipe may hold only regular files and directories`);
  }
  return files.sort();
}

const sha256 = (data) => createHash('sha256').update(data).digest('hex');

/**
 * What the image is made from: every file of the recipe directory (by content; modes and times
 * do not matter, since the build reads the files and runs build.sh through bash) and the package
 * list. It is stored beside the cached image, so a miss can name what changed.
 */
export async function readRecipe(dir = recipeDir) {
  const files = [];
  for (const file of await listFiles(dir)) {
    files.push({ path: file, sha256: sha256(await readFile(path.join(dir, file))) });
  }
  const packagesFile = path.join(dir, 'packages.txt');
  const packages = parsePackageList(await readFile(packagesFile, 'utf8'));
  return { recipeVersion: RECIPE_VERSION, name: FIXTURE_NAME, files, packages };
}

/** JSON with object keys sorted at every level, so equal values always give equal text. */
export function canonicalJson(value) {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).sort();
    return `{${keys.map((key) => `${JSON.stringify(key)}:${canonicalJson(value[key])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** sha256 (64 hex) of the recipe's canonical JSON. */
export function recipeKey(recipe) {
  return sha256(canonicalJson(recipe));
}

/** What differs between two recipes, one human-readable line per difference. */
export function diffRecipes(previous, current) {
  const changes = [];
  if (previous.recipeVersion !== current.recipeVersion) {
    changes.push(`recipeVersion: ${previous.recipeVersion} → ${current.recipeVersion}`);
  }
  const before = new Map(previous.files.map((file) => [file.path, file.sha256]));
  const after = new Map(current.files.map((file) => [file.path, file.sha256]));
  for (const [file, hash] of after) {
    if (!before.has(file)) changes.push(`files: ${file} added`);
    else if (before.get(file) !== hash) changes.push(`files: ${file} changed`);
  }
  for (const file of before.keys()) if (!after.has(file)) changes.push(`files: ${file} removed`);
  const added = current.packages.filter((name) => !previous.packages.includes(name));
  const removed = previous.packages.filter((name) => !current.packages.includes(name));
  if (added.length > 0 || removed.length > 0) {
    changes.push(`packages: ${[...added.map((n) => `+${n}`), ...removed.map((n) => `-${n}`)].join(' ')}`);
  }
  return changes;
}

/** `$KIB_CACHE_DIR` || `$XDG_CACHE_HOME/kube-image-builder` || `~/.cache/kube-image-builder`. */
export function resolveCacheDir(env = process.env, home = homedir()) {
  if (env.KIB_CACHE_DIR) return path.resolve(env.KIB_CACHE_DIR);
  if (env.XDG_CACHE_HOME) return path.resolve(env.XDG_CACHE_HOME, 'kube-image-builder');
  return path.join(home, '.cache', 'kube-image-builder');
}

/** `$KIB_STATE_DIR` || `$XDG_STATE_HOME/kube-image-builder` || `~/.local/state/kube-image-builder`. */
export function resolveStateDir(env = process.env, home = homedir()) {
  if (env.KIB_STATE_DIR) return path.resolve(env.KIB_STATE_DIR);
  if (env.XDG_STATE_HOME) return path.resolve(env.XDG_STATE_HOME, 'kube-image-builder');
  return path.join(home, '.local', 'state', 'kube-image-builder');
}

/** Where the image for `key` lives, and the files around it. */
export function fixturePaths({ cacheDir, stateDir, repoRoot: root = repoRoot }, key) {
  const key16 = key.slice(0, 16);
  const fixturesDir = path.join(cacheDir, 'fixtures');
  const entryDir = path.join(fixturesDir, `${FIXTURE_NAME}-${key16}`);
  return {
    fixturesDir,
    entryDir,
    imagePath: path.join(entryDir, IMAGE_FILE),
    checksumPath: path.join(entryDir, `${IMAGE_FILE}.sha256`),
    recipePath: path.join(entryDir, 'recipe.json'),
    lockPath: path.join(fixturesDir, `${FIXTURE_NAME}-${key16}.lock`),
    tempPrefix: `.${FIXTURE_NAME}-${key16}.tmp-`,
    logPath: path.join(stateDir, 'fixtures', `${FIXTURE_NAME}-${key16}.log`),
    linkPath: path.join(root, '.kib', 'fixtures', IMAGE_FILE),
  };
}

async function exists(file) {
  try {
    await stat(file);
    return true;
  } catch (error) {
    if (error.code === 'ENOENT') return false;
    throw error;
  }
}

function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM';
  }
}

const sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }
    function onAbort() {
      clearTimeout(timer);
      reject(signal.reason);
    }
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/** Mount points at or below `dir` (a killed mmdebstrap can leave /proc or /sys mounted in its tree). */
function mountsUnder(dir) {
  let table;
  try {
    table = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const unescape = (field) => field.replace(/\\([0-7]{3})/g, (_, octal) => String.fromCharCode(parseInt(octal, 8)));
  return table
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((field) => field !== undefined)
    .map(unescape)
    .filter((mountPoint) => mountPoint === dir || mountPoint.startsWith(`${dir}/`));
}

/** Removes a build's temporary directory, unless something is still mounted inside it. */
async function removeTempDir(dir, log) {
  const mounts = mountsUnder(dir);
  if (mounts.length > 0) {
    log(`fixture: not removing ${dir}: still mounted inside it: ${mounts.join(', ')} (unmount them, then delete it)`);
    return;
  }
  await rm(dir, { recursive: true, force: true });
}

/** Whether the process group's leader is still a fixture build (its pid may have been reused). */
function isFixtureBuild(pgid) {
  try {
    return readFileSync(`/proc/${pgid}/cmdline`, 'utf8').includes('build.sh');
  } catch {
    return false;
  }
}

/**
 * Takes the per-recipe lock: a file created exclusively, holding the owner's pid and its build's
 * process group. A lock whose owner died is stale: its orphaned build is stopped and the lock
 * removed. The lock only saves duplicate work: a finished image appears by an atomic rename, so
 * two builders that both got through would still leave one complete image.
 */
async function acquireLock(paths, { log, signal }) {
  const deadline = Date.now() + BUILD_TIMEOUT_MS;
  let announced = false;
  for (;;) {
    try {
      const handle = await open(paths.lockPath, 'wx');
      await handle.writeFile(JSON.stringify({ pid: process.pid, host: hostname(), pgid: null }));
      await handle.close();
      return {
        async setBuildGroup(pgid) {
          await writeFile(paths.lockPath, JSON.stringify({ pid: process.pid, host: hostname(), pgid }));
        },
        async release() {
          await unlink(paths.lockPath).catch(() => {});
        },
      };
    } catch (error) {
      if (error.code !== 'EEXIST') throw error;
    }
    let owner;
    try {
      owner = JSON.parse(await readFile(paths.lockPath, 'utf8'));
    } catch {
      owner = undefined; // being written, or just released: look again
    }
    if (owner?.host === hostname() && typeof owner.pid === 'number' && !isAlive(owner.pid)) {
      if (typeof owner.pgid === 'number' && isFixtureBuild(owner.pgid)) {
        log(`fixture: stopping the orphaned build (process group ${owner.pgid}) of dead process ${owner.pid}`);
        await stopGroup(owner.pgid);
      }
      log(`fixture: removing the stale lock of dead process ${owner.pid}`);
      await unlink(paths.lockPath).catch(() => {});
      continue;
    }
    if (await exists(paths.imagePath)) return undefined;
    if (!announced && owner !== undefined) {
      log(`fixture: waiting for process ${owner.pid} on ${owner.host}, which is building ${paths.entryDir}`);
      announced = true;
    }
    if (Date.now() > deadline) {
      throw Object.assign(new Error(`Timed out after ${BUILD_TIMEOUT_MS / 60_000} min waiting for the fixture lock ${paths.lockPath}`), {
        code: 'FIXTURE_LOCK_TIMEOUT',
      });
    }
    await sleep(LOCK_POLL_MS, signal);
  }
}

/** SIGTERM to a process group, SIGKILL if it is still there after a grace period. */
async function stopGroup(pgid) {
  const signalGroup = (sig) => {
    try {
      process.kill(-pgid, sig);
      return true;
    } catch {
      return false;
    }
  };
  if (!signalGroup('SIGTERM')) return;
  const deadline = Date.now() + STOP_GRACE_MS;
  while (Date.now() < deadline) {
    if (!signalGroup(0)) return;
    await sleep(200);
  }
  signalGroup('SIGKILL');
}

/** The only environment the build sees: a minimal one, plus proxy settings if the host uses a proxy. */
function buildEnv(env) {
  const result = { PATH: env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: env.HOME ?? '/root', LANG: 'C.UTF-8' };
  for (const name of ['TMPDIR', 'http_proxy', 'https_proxy', 'no_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY']) {
    if (env[name] !== undefined) result[name] = env[name];
  }
  return result;
}

/**
 * Runs `bash build.sh OUT_DIR` in its own process group, so that cancelling stops mmdebstrap and apt too.
 * Every output line goes to the log file and to `log`.
 */
async function runBuildScript(buildScript, outDir, paths, lock, { env, log, signal }) {
  signal?.throwIfAborted();
  await mkdir(path.dirname(paths.logPath), { recursive: true });
  const logFile = createWriteStream(paths.logPath);
  const tail = [];
  const child = spawn('bash', [buildScript, outDir], {
    cwd: outDir,
    env: buildEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  // Listen before the first await: a build that fails at once may close before it.
  const exited = new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (exitCode, exitSignal) => resolve([exitCode, exitSignal]));
  });
  exited.catch(() => {}); // awaited below; this only keeps an early spawn error from counting as unhandled
  const forward = (stream) => {
    let pending = '';
    const emit = (line) => {
      logFile.write(`${line}\n`);
      tail.push(line);
      if (tail.length > 40) tail.shift();
      log(line);
    };
    stream.setEncoding('utf8');
    stream.on('data', (chunk) => {
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      lines.forEach(emit);
    });
    stream.on('end', () => {
      if (pending !== '') emit(pending);
    });
  };
  forward(child.stdout);
  forward(child.stderr);

  const pgid = child.pid;
  // A test runner that exits abruptly must not leave a build running.
  const killOnExit = () => {
    try {
      if (pgid !== undefined) process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  const stop = () => {
    if (pgid !== undefined) void stopGroup(pgid);
  };
  process.on('exit', killOnExit);
  signal?.addEventListener('abort', stop, { once: true });
  const timer = setTimeout(stop, BUILD_TIMEOUT_MS);
  try {
    if (pgid !== undefined) await lock.setBuildGroup(pgid);
    const [code, sig] = await exited;
    if (signal?.aborted) throw signal.reason;
    if (code !== 0) {
      const how = sig === null ? `exited with ${code}` : `was killed by ${sig}`;
      throw Object.assign(
        new Error(`Building the Debian fixture image failed: build.sh ${how}. Full log: ${paths.logPath}\n${tail.join('\n')}`),
        { code: 'FIXTURE_BUILD_FAILED', logPath: paths.logPath },
      );
    }
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', stop);
    process.off('exit', killOnExit);
    await new Promise((resolve) => logFile.end(resolve));
  }
}

/** Points the stable `.kib/fixtures/debian-12.qcow2` link at `target`, replacing it atomically. */
async function updateLink(linkPath, target) {
  await mkdir(path.dirname(linkPath), { recursive: true });
  const temporary = `${linkPath}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await symlink(target, temporary);
  await rename(temporary, linkPath);
}

/** The image the repo's link points at, if it exists and was built from the recipe with `key`. */
async function linkedImage(linkPath, key) {
  try {
    const target = await realpath(linkPath);
    const recipe = JSON.parse(await readFile(path.join(path.dirname(target), 'recipe.json'), 'utf8'));
    return recipe.key === key && path.basename(target) === IMAGE_FILE ? target : undefined;
  } catch {
    return undefined;
  }
}

/** The most recently built cached entry of this fixture other than `exceptDir`, with its recipe. */
async function newestOtherEntry(fixturesDir, exceptDir) {
  let names;
  try {
    names = await readdir(fixturesDir);
  } catch {
    return undefined;
  }
  let newest;
  for (const name of names) {
    const dir = path.join(fixturesDir, name);
    if (!name.startsWith(`${FIXTURE_NAME}-`) || name.endsWith('.lock') || dir === exceptDir) continue;
    try {
      const info = await stat(path.join(dir, 'recipe.json'));
      if (newest === undefined || info.mtimeMs > newest.mtimeMs) newest = { dir, mtimeMs: info.mtimeMs };
    } catch {
      // not a finished entry
    }
  }
  if (newest === undefined) return undefined;
  return { dir: newest.dir, recipe: JSON.parse(await readFile(path.join(newest.dir, 'recipe.json'), 'utf8')) };
}

/**
 * Returns the absolute path of the cached Debian 12 fixture image, building it first if the cache
 * has no image for the current recipe. Concurrent callers wait for one build.
 */
export async function ensureDebianFixture(options = {}) {
  const env = options.env ?? process.env;
  const log = options.log ?? ((line) => process.stderr.write(`${line}\n`));
  const signal = options.signal;
  const cacheDir = options.cacheDir ?? resolveCacheDir(env);
  const stateDir = options.stateDir ?? resolveStateDir(env);
  const dir = options.recipeDir ?? recipeDir;
  const recipe = await readRecipe(dir);
  const key = recipeKey(recipe);
  const paths = fixturePaths({ cacheDir, stateDir, repoRoot: options.repoRoot ?? repoRoot }, key);

  // The image is shared even by tests that point KIB_CACHE_DIR at a temporary directory: the
  // repo's link already names the image of this recipe if it was built anywhere.
  const linked = await linkedImage(paths.linkPath, key);
  if (linked !== undefined) return linked;

  if (!(await exists(paths.imagePath))) {
    await mkdir(paths.fixturesDir, { recursive: true });
    const lock = await acquireLock(paths, { log, signal });
    if (lock !== undefined) {
      try {
        if (!(await exists(paths.imagePath))) await buildEntry(dir, recipe, key, paths, lock, { env, log, signal });
      } finally {
        await lock.release();
      }
    }
  }
  await updateLink(paths.linkPath, paths.imagePath);
  return paths.imagePath;
}

async function buildEntry(dir, recipe, key, paths, lock, { env, log, signal }) {
  // We hold the lock, so any temporary directory of this recipe is left over from a dead build.
  for (const name of await readdir(paths.fixturesDir)) {
    if (name.startsWith(paths.tempPrefix)) await removeTempDir(path.join(paths.fixturesDir, name), log);
  }
  const previous = await newestOtherEntry(paths.fixturesDir, paths.entryDir);
  const why =
    previous === undefined
      ? 'none is cached'
      : `the newest cached one (${path.basename(previous.dir)}) differs: ${diffRecipes(previous.recipe, recipe).join('; ')}`;
  log(`fixture: building ${path.basename(paths.entryDir)} (recipe ${key.slice(0, 16)}); ${why}`);

  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw Object.assign(
      new Error(
        `The Debian fixture image ${paths.imagePath} is not built yet, and building it needs root ` +
          '(mmdebstrap, and mkfs.ext4 -d reading every file with its owner). Build it once into this cache: ' +
          `sudo env KIB_CACHE_DIR=${path.dirname(paths.fixturesDir)} npm run fixture — later runs reuse it.`,
      ),
      { code: 'FIXTURE_NEEDS_ROOT' },
    );
  }
  const started = Date.now();
  const tempDir = path.join(paths.fixturesDir, `${paths.tempPrefix}${randomBytes(6).toString('hex')}`);
  await mkdir(tempDir);
  try {
    await runBuildScript(path.join(dir, 'build.sh'), tempDir, paths, lock, { env, log, signal });
    await writeFile(path.join(tempDir, 'recipe.json'), `${JSON.stringify({ key, ...recipe }, null, 2)}\n`);
    try {
      await rename(tempDir, paths.entryDir);
    } catch (error) {
      // Another builder got there first (only if the lock was lost): its image is as good as ours.
      if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
    }
    log(`fixture: built ${paths.imagePath} in ${Math.round((Date.now() - started) / 1000)} s`);
  } finally {
    if (await exists(tempDir)) await removeTempDir(tempDir, log);
  }
}

async function main() {
  const controller = new AbortController();
  let interrupted = false;
  const onSignal = (name) => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write(`fixture: ${name}: stopping the build…\n`);
    controller.abort(new Error(`interrupted by ${name}`));
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  try {
    const imagePath = await ensureDebianFixture({ signal: controller.signal });
    process.stdout.write(`${imagePath}\n`);
  } catch (error) {
    process.stderr.write(`fixture: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = interrupted ? 130 : 1;
  }
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main();
}
