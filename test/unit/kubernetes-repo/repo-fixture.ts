import { gzipSync } from 'node:zlib';
import type { ImageServer } from '../base-image/image-server.js';

/** [name, arch, version, release] of one package build in a fixture repository. */
export type Build = readonly [string, string, string, string];

/**
 * A v1.37 repository as pkgs.k8s.io lays it out, with builds in the order given. The newest patch
 * is deliberately not listed first, and other architectures and an older release sit beside it.
 */
export const RPM_BUILDS: readonly Build[] = [
  ['kubeadm', 'x86_64', '1.37.0', '150500.1.1'],
  ['kubeadm', 'x86_64', '1.37.10', '150500.1.1'],
  ['kubeadm', 'aarch64', '1.37.11', '150500.1.1'],
  ['kubeadm', 'x86_64', '1.37.9', '150500.2.1'],
  ['kubeadm', 'x86_64', '1.37.10', '150500.1.2'],
  ['kubelet', 'x86_64', '1.37.10', '150500.1.2'],
  ['kubelet', 'x86_64', '1.37.9', '150500.2.1'],
  ['kubelet', 'x86_64', '1.37.0', '150500.1.1'],
  ['kubectl', 'x86_64', '1.37.9', '150500.2.1'],
  ['kubectl', 'x86_64', '1.37.10', '150500.1.2'],
  ['kubectl', 'x86_64', '1.37.0', '150500.1.1'],
  ['cri-tools', 'x86_64', '1.37.0', '150500.1.1'],
  ['cri-tools', 'x86_64', '1.37.1', '150500.1.1'],
  ['kubernetes-cni', 'x86_64', '1.9.1', '150500.1.1'],
  ['kubernetes-cni', 'x86_64', '1.10.0', '150500.1.1'],
  ['kubernetes-cni', 'aarch64', '1.11.0', '150500.1.1'],
];

export const DEB_BUILDS: readonly Build[] = [
  ['kubeadm', 'amd64', '1.37.9', '1.1'],
  ['kubeadm', 'amd64', '1.37.10', '1.1'],
  ['kubeadm', 'arm64', '1.37.11', '1.1'],
  ['kubeadm', 'amd64', '1.37.2', '1.1'],
  ['kubelet', 'amd64', '1.37.10', '1.1'],
  ['kubelet', 'amd64', '1.37.2', '1.1'],
  ['kubectl', 'amd64', '1.37.2', '1.1'],
  ['kubectl', 'amd64', '1.37.10', '1.1'],
  ['cri-tools', 'amd64', '1.37.1', '1.1'],
  ['cri-tools', 'amd64', '1.37.0', '1.1'],
  ['kubernetes-cni', 'amd64', '1.10.0', '1.1'],
  ['kubernetes-cni', 'amd64', '1.9.1', '1.1'],
];

export function renderPrimaryXml(builds: readonly Build[]): string {
  const packages = builds.map(
    ([name, arch, version, release]) =>
      `<package type="rpm">\n  <name>${name}</name>\n  <arch>${arch}</arch>\n  <version epoch="0" ver="${version}" rel="${release}"/>\n  <checksum type="sha256" pkgid="YES">${'0'.repeat(64)}</checksum>\n  <summary>${name}</summary>\n  <location href="${arch}/${name}-${version}-${release}.${arch}.rpm"/>\n</package>`,
  );
  return `<?xml version="1.0" encoding="UTF-8"?>\n<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="${String(builds.length)}">\n${packages.join('\n')}\n</metadata>\n`;
}

export function renderRepomdXml(primaryHref: string): string {
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<repomd xmlns="http://linux.duke.edu/metadata/repo" xmlns:rpm="http://linux.duke.edu/metadata/rpm">',
    '  <revision>1760000000</revision>',
    '  <data type="filelists">',
    '    <location href="repodata/ffff-filelists.xml.gz"/>',
    '  </data>',
    '  <data type="primary">',
    `    <checksum type="sha256">${'a'.repeat(64)}</checksum>`,
    `    <location href="${primaryHref}"/>`,
    '  </data>',
    '</repomd>',
    '',
  ].join('\n');
}

export function renderPackagesIndex(builds: readonly Build[]): string {
  return builds
    .map(([name, arch, version, revision]) =>
      [
        `Package: ${name}`,
        `Version: ${version}-${revision}`,
        `Architecture: ${arch}`,
        'Maintainer: Kubernetes Authors',
        `Filename: ${arch}/${name}_${version}-${revision}_${arch}.deb`,
        `Description: ${name}`,
        ' A continuation line of the description.',
      ].join('\n'),
    )
    .join('\n\n')
    .concat('\n');
}

/** Serves an rpm repository for `series` under `<root>v<series>/rpm/`, primary metadata gzipped. */
export function serveRpmRepo(server: ImageServer, root: string, series: string, builds: readonly Build[] = RPM_BUILDS): void {
  const base = `${root}v${series}/rpm/`;
  const href = 'repodata/0123abcd-primary.xml.gz';
  server.serve(`${base}repodata/repomd.xml`, renderRepomdXml(href));
  server.serve(`${base}${href}`, gzipSync(renderPrimaryXml(builds)));
}

/** Serves a flat Debian repository for `series` under `<root>v<series>/deb/`. */
export function serveDebRepo(server: ImageServer, root: string, series: string, options: { gzip: boolean }, builds: readonly Build[] = DEB_BUILDS): void {
  const base = `${root}v${series}/deb/`;
  const text = renderPackagesIndex(builds);
  if (options.gzip) server.serve(`${base}Packages.gz`, gzipSync(text));
  else server.serve(`${base}Packages`, text);
}
