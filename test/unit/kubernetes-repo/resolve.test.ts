import { execFileSync } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KibError, NetworkError } from '../../../src/core/errors.js';
import { parseDebianPackages, parseRepomdPrimaryHref, parseRpmPrimary } from '../../../src/kubernetes-repo/metadata.js';
import { kubernetesRepoUrl, resolveKubernetes, selectKubernetesPackages } from '../../../src/kubernetes-repo/resolve.js';
import { findTool } from '../../../src/process/index.js';
import { closedPort, ImageServer } from '../base-image/image-server.js';
import { DEB_BUILDS, renderPackagesIndex, renderPrimaryXml, renderRepomdXml, RPM_BUILDS, serveDebRepo, serveRpmRepo } from './repo-fixture.js';

const ROOT = '/core:/stable:/';
let server: ImageServer;

beforeEach(async () => {
  server = await ImageServer.start();
});
afterEach(async () => {
  await server.close();
});

describe('metadata parsers', () => {
  it('find the primary metadata in repomd.xml', () => {
    expect(parseRepomdPrimaryHref(renderRepomdXml('repodata/x-primary.xml.zst'))).toBe('repodata/x-primary.xml.zst');
    expect(parseRepomdPrimaryHref('<repomd><data type="other"><location href="o.xml.gz"/></data></repomd>')).toBeUndefined();
  });

  it('read every build of an rpm primary.xml and a Debian Packages index', () => {
    expect(parseRpmPrimary(renderPrimaryXml(RPM_BUILDS))).toHaveLength(RPM_BUILDS.length);
    expect(parseRpmPrimary(renderPrimaryXml(RPM_BUILDS))[1]).toEqual({ name: 'kubeadm', arch: 'x86_64', version: { epoch: 0, version: '1.37.10', release: '150500.1.1' } });
    const deb = parseDebianPackages(renderPackagesIndex(DEB_BUILDS));
    expect(deb).toHaveLength(DEB_BUILDS.length);
    expect(deb[0]).toEqual({ name: 'kubeadm', arch: 'amd64', version: { epoch: 0, version: '1.37.9', release: '1.1' } });
  });
});

describe('selectKubernetesPackages', () => {
  const rpm = parseRpmPrimary(renderPrimaryXml(RPM_BUILDS));

  it('takes the newest patch and the newest build of it, for the image architecture only', () => {
    // 1.37.11 exists only for aarch64; 1.37.10 has two builds, .1.2 is newer.
    expect(selectKubernetesPackages(rpm, { series: '1.37', osFamily: 'redhat', arch: 'x64' }, 'src')).toEqual({
      version: '1.37.10',
      series: 'v1.37',
      arch: 'x86_64',
      packages: {
        kubeadm: '1.37.10-150500.1.2',
        kubelet: '1.37.10-150500.1.2',
        kubectl: '1.37.10-150500.1.2',
        'cri-tools': '1.37.1-150500.1.1',
        'kubernetes-cni': '1.10.0-150500.1.1',
      },
    });
  });

  it('takes an exact release when one is asked for, and names the newest when it is missing', () => {
    expect(selectKubernetesPackages(rpm, { series: '1.37', version: '1.37.9', osFamily: 'redhat', arch: 'x64' }, 'src').packages.kubeadm).toBe('1.37.9-150500.2.1');
    let error: unknown;
    try {
      selectKubernetesPackages(rpm, { series: '1.37', version: '1.37.3', osFamily: 'redhat', arch: 'x64' }, 'https://repo/');
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(KibError);
    expect((error as KibError).code).toBe('REPO_PACKAGE_MISSING');
    expect((error as KibError).message).toContain('kubeadm 1.37.3, kubelet 1.37.3, kubectl 1.37.3');
    expect((error as KibError).hint).toContain('1.37.10');
  });

  it('refuses when a release package lacks the chosen version', () => {
    const noKubectl = rpm.filter((p) => !(p.name === 'kubectl' && p.version.version === '1.37.10'));
    expect(() => selectKubernetesPackages(noKubectl, { series: '1.37', osFamily: 'redhat', arch: 'x64' }, 'src')).toThrow(/kubectl 1\.37\.10/);
  });
});

describe('resolveKubernetes over HTTP', () => {
  it('resolves the newest patch from an rpm repository (repomd.xml → gzipped primary)', async () => {
    serveRpmRepo(server, ROOT, '1.37');
    const resolved = await resolveKubernetes({ series: '1.37', osFamily: 'redhat', arch: 'x64', repoBase: server.url(ROOT) });
    expect(resolved).toEqual({
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
    expect(server.seen.map((request) => request.path)).toEqual([`${ROOT}v1.37/rpm/repodata/repomd.xml`, `${ROOT}v1.37/rpm/repodata/0123abcd-primary.xml.gz`]);
  });

  it('resolves from a flat Debian repository, Packages.gz, Packages.xz or else Packages', async () => {
    serveDebRepo(server, ROOT, '1.37', { gzip: true });
    const expected = {
      version: '1.37.10',
      series: 'v1.37',
      osFamily: 'debian',
      arch: 'amd64',
      source: server.url(`${ROOT}v1.37/deb/`),
      packages: { kubeadm: '1.37.10-1.1', kubelet: '1.37.10-1.1', kubectl: '1.37.10-1.1', 'cri-tools': '1.37.1-1.1', 'kubernetes-cni': '1.10.0-1.1' },
    };
    expect(await resolveKubernetes({ series: '1.37', osFamily: 'debian', arch: 'x64', repoBase: server.url(ROOT) })).toEqual(expected);

    await server.close();
    server = await ImageServer.start();
    serveDebRepo(server, ROOT, '1.37', { gzip: false });
    const plain = await resolveKubernetes({ series: '1.37', version: '1.37.2', osFamily: 'debian', arch: 'x64', repoBase: server.url(ROOT) });
    expect(plain.packages).toEqual({ kubeadm: '1.37.2-1.1', kubelet: '1.37.2-1.1', kubectl: '1.37.2-1.1', 'cri-tools': '1.37.1-1.1', 'kubernetes-cni': '1.10.0-1.1' });
    expect(server.seen.map((request) => [request.path, request.status])).toEqual([
      [`${ROOT}v1.37/deb/Packages.gz`, 404],
      [`${ROOT}v1.37/deb/Packages.xz`, 404],
      [`${ROOT}v1.37/deb/Packages`, 200],
    ]);
  });

  it.skipIf(findTool('zstd') === undefined)('reads zstd-compressed primary metadata (skipped without the zstd tool on Node.js 20)', async () => {
    const base = `${ROOT}v1.37/rpm/`;
    server.serve(`${base}repodata/repomd.xml`, renderRepomdXml('repodata/9-primary.xml.zst'));
    server.serve(`${base}repodata/9-primary.xml.zst`, execFileSync('zstd', ['-q', '-c'], { input: renderPrimaryXml(RPM_BUILDS) }));
    const resolved = await resolveKubernetes({ series: '1.37', osFamily: 'redhat', arch: 'x64', repoBase: server.url(ROOT) });
    expect(resolved.version).toBe('1.37.10');
  });

  it('names a compression it cannot read', async () => {
    const base = `${ROOT}v1.37/rpm/`;
    server.serve(`${base}repodata/repomd.xml`, renderRepomdXml('repodata/9-primary.xml.lz4'));
    server.serve(`${base}repodata/9-primary.xml.lz4`, 'whatever');
    const error = await resolveKubernetes({ series: '1.37', osFamily: 'redhat', arch: 'x64', repoBase: server.url(ROOT) }).catch((caught: unknown) => caught);
    expect((error as KibError).code).toBe('REPO_COMPRESSION');
    expect((error as KibError).message).toContain('lz4');
  });

  it('fails at once, naming the URL, when the repository is unreachable', async () => {
    const port = await closedPort();
    const started = Date.now();
    const error = await resolveKubernetes({ series: '1.37', osFamily: 'redhat', arch: 'x64', repoBase: `http://127.0.0.1:${String(port)}/core:/stable:/` }).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(NetworkError);
    expect((error as NetworkError).url).toBe(`http://127.0.0.1:${String(port)}/core:/stable:/v1.37/rpm/repodata/repomd.xml`);
    expect((error as NetworkError).message).toContain('ECONNREFUSED');
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('says when a series has no repository', async () => {
    const error = await resolveKubernetes({ series: '1.99', osFamily: 'debian', arch: 'x64', repoBase: server.url(ROOT) }).catch((caught: unknown) => caught);
    expect((error as KibError).code).toBe('REPO_NOT_FOUND');
    expect((error as KibError).message).toContain('v1.99/deb/Packages');
  });
});

describe('kubernetesRepoUrl', () => {
  it('is pkgs.k8s.io by default, one repository per series and format', () => {
    expect(kubernetesRepoUrl('1.37', 'redhat')).toBe('https://pkgs.k8s.io/core:/stable:/v1.37/rpm/');
    expect(kubernetesRepoUrl('1.37', 'debian', 'http://mirror/k8s')).toBe('http://mirror/k8s/v1.37/deb/');
  });
});
