import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { Ajv, type ValidateFunction } from 'ajv';
import { buildSbom, ociPurl, packagePurl, parseImageRef, renderJson, uuidV5 } from '../../../src/export/index.js';
import { debianInventory, sampleInventory, sampleMeta } from './support.js';

const require = createRequire(import.meta.url);
const diskSha256 = '9'.repeat(64);

// The official CycloneDX 1.5 JSON schema, as shipped in @cyclonedx/cyclonedx-library (a devDependency).
async function loadValidator(): Promise<ValidateFunction> {
  const schemaDir = `${require.resolve('@cyclonedx/cyclonedx-library/package.json').replace(/package\.json$/, '')}res/schema/`;
  const load = async (file: string): Promise<Record<string, unknown>> => JSON.parse(await readFile(`${schemaDir}${file}`, 'utf8')) as Record<string, unknown>;
  const addFormats = require('ajv-formats') as (ajv: Ajv) => Ajv;
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats(ajv);
  // ajv-formats has no IRI or IDN formats; the SBOM uses neither, so any string passes them.
  ajv.addFormat('iri-reference', true);
  ajv.addFormat('idn-email', true);
  // The bom schema refers to its siblings by their SNAPSHOT file names.
  for (const name of ['spdx', 'jsf-0.82']) {
    const schema = await load(`${name}.SNAPSHOT.schema.json`);
    ajv.addSchema({ ...schema, $id: `http://cyclonedx.org/schema/${name}.SNAPSHOT.schema.json` });
  }
  return ajv.compile(await load('bom-1.5.SNAPSHOT.schema.json'));
}

describe('buildSbom', () => {
  it('validates against the CycloneDX 1.5 JSON schema (rpm and deb inventories)', async () => {
    const validate = await loadValidator();
    for (const inventory of [sampleInventory, debianInventory]) {
      const bom = JSON.parse(renderJson(buildSbom(inventory, { ...sampleMeta, diskSha256 }))) as unknown;
      const ok = validate(bom);
      expect(validate.errors ?? []).toEqual([]);
      expect(ok).toBe(true);
    }
    // The validator does reject a broken BOM.
    const broken = { ...buildSbom(sampleInventory, { ...sampleMeta, diskSha256 }), serialNumber: 'not-a-urn' };
    expect(validate(JSON.parse(JSON.stringify(broken)))).toBe(false);
  });

  it('lists every package, the Kubernetes binaries with hashes, and the pre-pulled images with digests', () => {
    const bom = buildSbom(sampleInventory, { ...sampleMeta, diskSha256 });
    expect(bom.bomFormat).toBe('CycloneDX');
    expect(bom.specVersion).toBe('1.5');
    expect(bom.metadata.timestamp).toBe(sampleMeta.facts.build.date);
    expect(bom.metadata.component).toMatchObject({ type: 'operating-system', name: 'rocky-9', version: 'v0.3.0-2-gabc1234', hashes: [{ alg: 'SHA-256', content: diskSha256 }] });
    const purls = bom.components.filter((c) => c.type === 'library').map((c) => c.purl);
    expect(purls).toEqual([
      'pkg:rpm/rocky/containerd.io@1.7.27-3.1.el9?arch=x86_64&distro=rocky-9.6',
      'pkg:rpm/rocky/gpg-pubkey@350d275d-6279464b?arch=%28none%29&distro=rocky-9.6',
      'pkg:rpm/rocky/kernel-core@5.14.0-570.el9?arch=x86_64&distro=rocky-9.6',
      'pkg:rpm/rocky/shadow-utils@4.9-12.el9?arch=x86_64&distro=rocky-9.6&epoch=2',
    ]);
    const binaries = bom.components.filter((c) => c.type === 'application');
    expect(binaries.map((c) => [c.name, c.version, c.hashes?.[0]?.content])).toEqual([
      ['kubeadm', 'v1.36.1', 'b'.repeat(64)],
      ['kubelet', 'v1.36.1', 'a'.repeat(64)],
    ]);
    const images = bom.components.filter((c) => c.type === 'container');
    expect(images.map((c) => c.purl)).toEqual([
      `pkg:oci/tool@sha256%3A${'e'.repeat(64)}?repository_url=localhost:5000/team/tool&tag=1.0`,
      `pkg:oci/kube-apiserver@sha256%3A${'c'.repeat(64)}?repository_url=registry.k8s.io/kube-apiserver&tag=v1.36.1`,
      `pkg:oci/pause@sha256%3A${'d'.repeat(64)}?repository_url=registry.k8s.io/pause&tag=3.10`,
    ]);
    expect(images[1]?.hashes).toEqual([{ alg: 'SHA-256', content: 'c'.repeat(64) }]);
    expect(bom.components.filter((c) => c.type === 'operating-system').map((c) => c.description)).toEqual(['Rocky Linux 9.6 (Blue Onyx)']);
  });

  it('is reproducible: same inputs, same bytes; the serial number is a v5 UUID of the disk sha256', () => {
    const a = renderJson(buildSbom(sampleInventory, { ...sampleMeta, diskSha256 }));
    const reordered = { ...sampleInventory, packages: [...sampleInventory.packages].reverse(), images: [...sampleInventory.images].reverse() };
    const b = renderJson(buildSbom(reordered, { ...sampleMeta, diskSha256 }));
    expect(b).toBe(a);
    const serial = buildSbom(sampleInventory, { ...sampleMeta, diskSha256 }).serialNumber;
    expect(serial).toMatch(/^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(buildSbom(sampleInventory, { ...sampleMeta, diskSha256: '8'.repeat(64) }).serialNumber).not.toBe(serial);
  });

  it('records why Kubernetes was skipped', () => {
    const bom = buildSbom(debianInventory, { ...sampleMeta, diskSha256 });
    expect(bom.metadata.properties).toContainEqual({ name: 'kube-image-builder:kubernetes-installed', value: 'false' });
    expect(bom.metadata.properties).toContainEqual({ name: 'kube-image-builder:kubernetes-skipped-reason', value: debianInventory.kubernetes.skippedReason });
  });

  it('rejects an image digest that is not sha256', () => {
    const bad = { ...sampleInventory, images: [{ ref: 'registry.k8s.io/pause:3.10', digest: 'md5:abc' }] };
    expect(() => buildSbom(bad, { ...sampleMeta, diskSha256 })).toThrow(/expected sha256/);
  });
});

describe('purls and references', () => {
  it('deb purls keep the epoch in the version and encode +', () => {
    expect(packagePurl({ name: 'login', version: '1:4.13+dfsg1-1+b1', arch: 'amd64', manager: 'dpkg' }, 'debian', 'debian-12')).toBe(
      'pkg:deb/debian/login@1:4.13%2Bdfsg1-1%2Bb1?arch=amd64&distro=debian-12',
    );
    expect(packagePurl({ name: 'libstdc++6', version: '12.2.0-14', arch: 'amd64', manager: 'dpkg' }, 'debian', 'debian-12')).toBe(
      'pkg:deb/debian/libstdc%2B%2B6@12.2.0-14?arch=amd64&distro=debian-12',
    );
  });

  it('parses image references with registries, ports, Docker Hub short names and digests', () => {
    expect(parseImageRef('registry.k8s.io/coredns/coredns:v1.12.0')).toMatchObject({ registry: 'registry.k8s.io', path: 'coredns/coredns', name: 'coredns', tag: 'v1.12.0' });
    expect(parseImageRef('nginx')).toMatchObject({ repository: 'docker.io/library/nginx', tag: undefined, digest: undefined });
    expect(parseImageRef('localhost:5000/x@sha256:abc')).toMatchObject({ registry: 'localhost:5000', path: 'x', tag: undefined, digest: 'sha256:abc' });
    expect(() => parseImageRef('x:')).toThrow(/not an image reference/);
    expect(ociPurl(parseImageRef('nginx'), 'sha256:00')).toBe('pkg:oci/nginx@sha256%3A00?repository_url=docker.io/library/nginx');
  });

  it('uuidV5 matches the RFC 4122 example for the DNS namespace', () => {
    // Python: uuid.uuid5(uuid.NAMESPACE_DNS, 'python.org')
    expect(uuidV5('6ba7b810-9dad-11d1-80b4-00c04fd430c8', 'python.org')).toBe('886313e1-3b8a-5372-9b90-0c9aee199e5d');
  });
});
