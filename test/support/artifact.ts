import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { ensureDebianFixture } from './fixture.js';
import { REPO_ROOT, runKib } from './kib-cli.js';

/**
 * The offline Debian 12 artifact (`kib build --config examples/debian-12.yaml` on the fixture),
 * built once and cached under `<cache>/artifacts/debian-12-<key>/`, where the key hashes the
 * playbook tree, the build definition and the fixture image's path (which carries its recipe
 * key). Tests that only need *an* artifact (the cluster tier) share it; test/vm/build.test.ts keeps
 * building its own, because the build is what it tests.
 */
export interface CachedArtifact {
  qcow2: string;
  manifest: string;
  /** True when this call built it (the caller may report the time). */
  built: boolean;
}

async function treeHash(dir: string, hash: ReturnType<typeof createHash>): Promise<void> {
  const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name));
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await treeHash(path, hash);
    else if (entry.isFile()) {
      hash.update(`${relative(REPO_ROOT, path)}\0`);
      hash.update(await readFile(path));
      hash.update('\0');
    }
  }
}

export async function debianArtifactKey(fixture: string): Promise<string> {
  const hash = createHash('sha256');
  await treeHash(join(REPO_ROOT, 'playbook'), hash);
  hash.update(await readFile(join(REPO_ROOT, 'examples', 'debian-12.yaml')));
  hash.update(fixture);
  return hash.digest('hex').slice(0, 16);
}

function cacheDir(): string {
  return process.env.KIB_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'kube-image-builder');
}

export async function ensureDebianArtifact(): Promise<CachedArtifact> {
  const fixture = await ensureDebianFixture();
  const key = await debianArtifactKey(fixture);
  const dir = join(cacheDir(), 'artifacts', `debian-12-${key}`);
  const found = async (): Promise<{ qcow2: string; manifest: string } | undefined> => {
    if (!existsSync(join(dir, 'done.json'))) return undefined;
    const done = JSON.parse(await readFile(join(dir, 'done.json'), 'utf8')) as { qcow2: string };
    return { qcow2: join(dir, done.qcow2), manifest: join(dir, 'manifest.json') };
  };
  const cached = await found();
  if (cached !== undefined) return { ...cached, built: false };

  const temp = `${dir}.tmp-${process.pid}`;
  await rm(temp, { recursive: true, force: true });
  await mkdir(temp, { recursive: true });
  // Run dirs hold unix sockets (107-byte paths): keep the build's state dir short.
  const state = await mkdtemp(join(tmpdir(), 'kib-art-'));
  const result = await runKib(['build', '--config', 'examples/debian-12.yaml', '--base', fixture, '--output', join(temp, 'out'), '--json'], {
    env: { KIB_STATE_DIR: state },
  });
  if (result.exitCode !== 0) throw new Error(`kib build of the cluster tier's artifact failed (exit ${String(result.exitCode)}):\n${result.stderr.slice(-4000)}`);
  const output = JSON.parse(result.stdout) as { outputDir: string; artifacts: { path: string; kind: string }[] };
  const qcow2 = output.artifacts.find((a) => a.kind === 'qcow2')?.path;
  if (qcow2 === undefined) throw new Error('kib build made no qcow2');
  await rename(qcow2, join(temp, 'disk.qcow2'));
  await rename(join(output.outputDir, 'manifest.json'), join(temp, 'manifest.json'));
  await rm(join(temp, 'out'), { recursive: true, force: true });
  await rm(state, { recursive: true, force: true });
  await writeFile(join(temp, 'done.json'), `${JSON.stringify({ qcow2: 'disk.qcow2', key, builtAt: new Date().toISOString() })}\n`);
  await rm(dir, { recursive: true, force: true });
  await rename(temp, dir);
  const ready = await found();
  if (ready === undefined) throw new Error(`cached artifact ${dir} vanished`);
  return { ...ready, built: true };
}
