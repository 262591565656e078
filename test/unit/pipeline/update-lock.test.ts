import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { applyLock, loadBuildSpec, parseLock, renderLock } from '../../../src/config/index.js';
import { NetworkError } from '../../../src/core/errors.js';
import { updateLockFile } from '../../../src/pipeline/lock.js';
import type { KibEvent } from '../../../src/report/events.js';
import { closedPort, ImageServer, makeImage } from '../base-image/image-server.js';
import { RPM_BUILDS, serveRpmRepo } from '../kubernetes-repo/repo-fixture.js';

const ROOT = '/core:/stable:/';
const IMAGE_PATH = '/pub/rocky/9.8/images/x86_64/base.qcow2';

let server: ImageServer;
let dir: string;
let image: { data: Buffer; sha256: string };
let events: KibEvent[];

beforeEach(async () => {
  server = await ImageServer.start();
  dir = await mkdtemp(join(tmpdir(), 'kib-update-lock-'));
  image = makeImage(64 * 1024);
  server.serve(IMAGE_PATH, image.data);
  events = [];
});
afterEach(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

async function writeDefinition(kubernetes: string): Promise<string> {
  const path = join(dir, 'image.yaml');
  await writeFile(path, `name: x\nbase:\n  url: ${server.url(IMAGE_PATH)}\n  sha256: ${image.sha256}\nkubernetes:\n${kubernetes}`);
  return path;
}

const options = (repoBase: string) => ({
  cacheDir: join(dir, 'cache'),
  reporter: { emit: (event: KibEvent) => events.push(event) },
  kubernetesRepoBase: repoBase,
  arch: 'x64',
});

describe('updateLockFile', () => {
  it('replaces a lock that is stale against image.yaml with the newest patch of the series', async () => {
    serveRpmRepo(server, ROOT, '1.37');
    const configPath = await writeDefinition('  series: "1.37"\n');
    const lockPath = join(dir, 'image.lock');
    // Written when the definition still followed 1.36.
    await writeFile(
      lockPath,
      renderLock({
        lockVersion: 1,
        base: { url: server.url(IMAGE_PATH), sha256: image.sha256, sizeBytes: image.data.length },
        kubernetes: {
          version: '1.36.1',
          series: 'v1.36',
          osFamily: 'redhat',
          arch: 'x86_64',
          source: server.url(`${ROOT}v1.36/rpm/`),
          packages: { kubeadm: '1.36.1-150500.1.1', kubelet: '1.36.1-150500.1.1', kubectl: '1.36.1-150500.1.1', 'cri-tools': '1.36.0-150500.1.1', 'kubernetes-cni': '1.9.1-150500.1.1' },
        },
      }),
    );
    const spec = await loadBuildSpec({ configPath });
    const stale = applyLock(spec, parseLock(await readFile(lockPath, 'utf8')), lockPath);
    expect(stale.spec.kubernetes.version).toBeUndefined();
    expect(stale.notes).toEqual(['image.lock records Kubernetes 1.36.1 (v1.36), but image.yaml asks for series "1.37"; the lock\'s packages do not apply, run `kib lock --update`']);

    const result = await updateLockFile(spec, options(server.url(ROOT)));
    expect(result.lockPath).toBe(lockPath);
    const written = parseLock(await readFile(lockPath, 'utf8'));
    expect(written.kubernetes).toEqual({
      version: '1.37.10',
      series: 'v1.37',
      osFamily: 'redhat',
      arch: 'x86_64',
      source: server.url(`${ROOT}v1.37/rpm/`),
      packages: {
        kubeadm: '1.37.10-150500.1.2',
        kubelet: '1.37.10-150500.1.2',
        kubectl: '1.37.10-150500.1.2',
        'cri-tools': '1.37.1-150500.1.1',
        'kubernetes-cni': '1.10.0-150500.1.1',
      },
    });
    expect(written.base).toEqual({ url: server.url(IMAGE_PATH), sha256: image.sha256, sizeBytes: image.data.length });
    const applied = applyLock(spec, written, lockPath);
    expect(applied.notes).toEqual([]);
    expect(applied.spec.kubernetes.version).toBe('1.37.10');
    expect(await readdir(dir)).toEqual(expect.not.arrayContaining([expect.stringMatching(/\.tmp$/)]));
  });

  it('offline: fails fast naming the URL and the network, before the base download, and leaves the lock as it was', async () => {
    const configPath = await writeDefinition('  version: 1.37.10\n');
    const lockPath = join(dir, 'image.lock');
    const before = renderLock({ lockVersion: 1, base: { url: server.url(IMAGE_PATH), sha256: image.sha256, sizeBytes: 1 } });
    await writeFile(lockPath, before);
    const port = await closedPort();
    const started = Date.now();
    const error = await updateLockFile(await loadBuildSpec({ configPath }), options(`http://127.0.0.1:${String(port)}/core:/stable:/`)).catch((caught: unknown) => caught);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(error).toBeInstanceOf(NetworkError);
    expect((error as NetworkError).url).toBe(`http://127.0.0.1:${String(port)}/core:/stable:/v1.37/rpm/repodata/repomd.xml`);
    expect((error as NetworkError).hint).toContain('needs network access');
    expect((error as NetworkError).hint).toContain(`${lockPath} was not changed`);
    expect(await readFile(lockPath, 'utf8')).toBe(before);
    expect(server.seen).toEqual([]);
  });

  it('records an exact release with its builds, and nothing to resolve when packages are skipped', async () => {
    serveRpmRepo(server, ROOT, '1.37', RPM_BUILDS);
    const exact = await updateLockFile(await loadBuildSpec({ configPath: await writeDefinition('  version: 1.37.9\n') }), options(server.url(ROOT)));
    expect(exact.lock.kubernetes?.packages.kubelet).toBe('1.37.9-150500.2.1');

    server.seen.length = 0;
    const skipped = await updateLockFile(await loadBuildSpec({ configPath: await writeDefinition('  version: 1.37.9\n  packages: skip\n') }), options(server.url(ROOT)));
    expect(skipped.lock.kubernetes).toBeUndefined();
    expect(server.seen.filter((request) => request.path.startsWith(ROOT))).toEqual([]);
  });
});
