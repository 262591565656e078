import { parse, parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  dataVolumeStorageGi,
  KubevirtManifestInputError,
  placeholderContainerDiskRef,
  renderKubevirtManifests,
  renderKubevirtManifestStream,
  type KubevirtManifestInput,
} from '../../../src/kubevirt/manifests.js';
import { checkAgainstApiTypes } from './api-type-check.js';

const GIB = 1024 ** 3;
const SHA = 'c0ffee'.repeat(10) + 'abcd';
const REF = `registry.example.com/kib/rocky-9:v1.36.1@sha256:${'b'.repeat(64)}`;
const input: KubevirtManifestInput = {
  imageName: 'rocky-9',
  kubernetesVersion: '1.36.1',
  imageVersion: '1.4.0',
  httpUrl: 'http://192.0.2.10:8080/rocky-9-kube-1.36.1/rocky-9-kube-1.36.1.qcow2',
  sha256: SHA,
  virtualSizeBytes: 20 * GIB,
  containerDiskRef: REF,
};

type Doc = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function docs(overrides: Partial<KubevirtManifestInput> = {}): Record<'dataVolume' | 'virtualMachine' | 'containerDiskVirtualMachine' | 'kubevirtMachineTemplate', Doc> {
  const manifests = renderKubevirtManifests({ ...input, ...overrides });
  return {
    dataVolume: parse(manifests.dataVolume) as Doc,
    virtualMachine: parse(manifests.virtualMachine) as Doc,
    containerDiskVirtualMachine: parse(manifests.containerDiskVirtualMachine) as Doc,
    kubevirtMachineTemplate: parse(manifests.kubevirtMachineTemplate) as Doc,
  };
}

describe('validation against the KubeVirt and CDI API definitions', () => {
  it(
    'DataVolume, both VirtualMachines and the CAPK template’s VM spec conform (BIOS and UEFI variants)',
    () => {
      const bios = docs();
      const uefi = docs({ firmware: 'uefi', namespace: 'images', storageClassName: 'local-path', runStrategy: 'Once', cpuCores: 4, memory: '8Gi' });
      const diagnostics = checkAgainstApiTypes({
        dataVolume: { type: 'DataVolume', value: bios.dataVolume },
        virtualMachine: { type: 'VirtualMachine', value: bios.virtualMachine },
        containerDiskVirtualMachine: { type: 'VirtualMachine', value: bios.containerDiskVirtualMachine },
        capkVirtualMachineSpec: { type: 'VirtualMachineSpec', value: bios.kubevirtMachineTemplate.spec.template.spec.virtualMachineTemplate.spec },
        uefiDataVolume: { type: 'DataVolume', value: uefi.dataVolume },
        uefiVirtualMachine: { type: 'VirtualMachine', value: uefi.virtualMachine },
        uefiContainerDiskVirtualMachine: { type: 'VirtualMachine', value: uefi.containerDiskVirtualMachine },
        uefiCapkVirtualMachineSpec: { type: 'VirtualMachineSpec', value: uefi.kubevirtMachineTemplate.spec.template.spec.virtualMachineTemplate.spec },
      });
      for (const [key, problems] of Object.entries(diagnostics)) expect(problems, key).toEqual([]);
    },
    120_000,
  );

  it(
    'the check rejects unknown fields, wrong types, bad enum values and missing required fields',
    () => {
      const { virtualMachine, dataVolume } = docs();
      const typo = structuredClone(virtualMachine);
      typo.spec.runStartegy = 'Always';
      const wrongType = structuredClone(virtualMachine);
      wrongType.spec.template.spec.domain.cpu.cores = 'two';
      const badEnum = structuredClone(virtualMachine);
      badEnum.spec.template.spec.volumes[0] = { name: 'rootdisk', containerDisk: { image: 'x', imagePullPolicy: 'Sometimes' } };
      const missing = structuredClone(dataVolume);
      delete missing.spec.source.http.url;
      const diagnostics = checkAgainstApiTypes({
        typo: { type: 'VirtualMachine', value: typo },
        wrongType: { type: 'VirtualMachine', value: wrongType },
        badEnum: { type: 'VirtualMachine', value: badEnum },
        missing: { type: 'DataVolume', value: missing },
        // Without the one documented addition, the generated CDI type does not know `checksum`.
        checksumOnOldApi: { type: 'DataVolumeStrict', value: dataVolume },
      });
      expect(diagnostics.typo?.join('\n')).toMatch(/runStartegy/);
      expect(diagnostics.wrongType?.join('\n')).toMatch(/'string' is not assignable to type 'number'/);
      expect(diagnostics.badEnum?.join('\n')).toMatch(/Sometimes/);
      expect(diagnostics.missing?.join('\n')).toMatch(/url/);
      expect(diagnostics.checksumOnOldApi?.join('\n')).toMatch(/checksum/);
    },
    120_000,
  );
});

describe('DataVolume', () => {
  it('imports over HTTP from kib serve with the sha256 checksum', () => {
    const { dataVolume } = docs();
    expect(dataVolume.apiVersion).toBe('cdi.kubevirt.io/v1beta1');
    expect(dataVolume.kind).toBe('DataVolume');
    expect(dataVolume.spec.source.http).toEqual({ url: input.httpUrl, checksum: `sha256:${SHA}` });
    expect(dataVolume.spec.storage.resources.requests.storage).toBe('22Gi');
  });

  it('accepts the digest with a sha256: prefix and in upper case', () => {
    const { dataVolume } = docs({ sha256: `sha256:${SHA.toUpperCase()}` });
    expect(dataVolume.spec.source.http.checksum).toBe(`sha256:${SHA}`);
  });

  it.each([
    [20 * GIB, 22],
    [10 * GIB, 11],
    [16 * GIB, 18], // 16 × 1.06 = 16.96 would round to 17, which CDI's (1 − 0.06) rule does not fit
    [47 * GIB, 50], // 47 / 0.94 is exactly 50
    [11_102_490_460, 11], // the largest disk that 11 Gi holds: floor(11 Gi × 0.94)
    [11_102_490_461, 12],
    [1, 1],
  ])('sizes a %d-byte disk at %d Gi', (virtualSizeBytes, gi) => {
    expect(dataVolumeStorageGi(virtualSizeBytes)).toBe(gi);
  });

  it('always leaves the virtual size usable after 6 % overhead, and never a whole Gi more than needed', () => {
    let seed = 7;
    for (let i = 0; i < 2_000; i++) {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      const virtual = 1 + Math.floor((seed / 2 ** 31) * 2_000 * GIB);
      const gi = dataVolumeStorageGi(virtual);
      expect(gi * GIB * 0.94).toBeGreaterThanOrEqual(virtual * (1 - 1e-12));
      expect(gi * GIB).toBeGreaterThanOrEqual(virtual * 1.06 * (1 - 1e-12));
      expect((gi - 1) * GIB * 0.94).toBeLessThan(virtual);
    }
  });

  it('passes the storage class through when given', () => {
    expect(docs({ storageClassName: 'rook-ceph-block' }).dataVolume.spec.storage.storageClassName).toBe('rook-ceph-block');
    expect(docs().dataVolume.spec.storage.storageClassName).toBeUndefined();
  });
});

describe('VirtualMachines', () => {
  it('boots the DataVolume on q35 with virtio disks, a NoCloud placeholder and a run strategy', () => {
    const { virtualMachine, dataVolume } = docs();
    expect(virtualMachine.apiVersion).toBe('kubevirt.io/v1');
    expect(virtualMachine.spec.runStrategy).toBe('Always');
    const spec = virtualMachine.spec.template.spec;
    expect(spec.domain.machine.type).toBe('q35');
    expect(spec.domain.firmware).toBeUndefined();
    for (const disk of spec.domain.devices.disks) expect(disk.disk.bus).toBe('virtio');
    expect(spec.domain.devices.disks[0]).toMatchObject({ name: 'rootdisk', bootOrder: 1 });
    expect(spec.volumes[0]).toEqual({ name: 'rootdisk', dataVolume: { name: dataVolume.metadata.name } });
    expect(spec.volumes[1].name).toBe('cloudinitdisk');
    expect(spec.volumes[1].cloudInitNoCloud.userData).toMatch(/^#cloud-config\n/);
    expect(spec.networks).toEqual([{ name: 'default', pod: {} }]);
    expect(spec.domain.devices.interfaces).toEqual([{ name: 'default', masquerade: {} }]);
  });

  it('renders UEFI with Secure Boot off, and the other knobs', () => {
    const { virtualMachine } = docs({ firmware: 'uefi', runStrategy: 'Halted', cpuCores: 4, memory: '8Gi', namespace: 'images' });
    const domain = virtualMachine.spec.template.spec.domain;
    expect(domain.firmware).toEqual({ bootloader: { efi: { secureBoot: false } } });
    expect(domain.cpu.cores).toBe(4);
    expect(domain.memory.guest).toBe('8Gi');
    expect(virtualMachine.spec.runStrategy).toBe('Halted');
    expect(virtualMachine.metadata.namespace).toBe('images');
  });

  it('boots the containerDisk in the ephemeral variant', () => {
    const { containerDiskVirtualMachine, virtualMachine } = docs();
    const volumes = containerDiskVirtualMachine.spec.template.spec.volumes;
    expect(volumes[0]).toEqual({ name: 'rootdisk', containerDisk: { image: REF, imagePullPolicy: 'IfNotPresent' } });
    expect(containerDiskVirtualMachine.metadata.name).not.toBe(virtualMachine.metadata.name);
  });
});

/**
 * No npm package ships CAPK's CRD types, so the envelope is checked against the fields from the
 * reference sheet (CAPK v0.11: KubevirtMachineTemplate → spec.template.spec.{virtualMachineTemplate,
 * virtualMachineBootstrapCheck}); the VM spec inside it is checked against KubeVirt's types above.
 */
const capkTemplateSchema = z.strictObject({
  apiVersion: z.literal('infrastructure.cluster.x-k8s.io/v1alpha1'),
  kind: z.literal('KubevirtMachineTemplate'),
  metadata: z.strictObject({
    name: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/).max(63),
    namespace: z.string().optional(),
    annotations: z.record(z.string(), z.string()).optional(),
  }),
  spec: z.strictObject({
    template: z.strictObject({
      spec: z.strictObject({
        virtualMachineBootstrapCheck: z.strictObject({ checkStrategy: z.enum(['ssh', 'none']) }).optional(),
        virtualMachineTemplate: z.strictObject({
          metadata: z.record(z.string(), z.unknown()).optional(),
          spec: z.record(z.string(), z.unknown()),
        }),
      }),
    }),
  }),
});

describe('CAPK KubevirtMachineTemplate', () => {
  it('has the CAPK envelope and puts the containerDisk where CAPK reads the node image', () => {
    const { kubevirtMachineTemplate } = docs();
    expect(capkTemplateSchema.safeParse(kubevirtMachineTemplate).error?.issues ?? []).toEqual([]);
    const vmSpec = kubevirtMachineTemplate.spec.template.spec.virtualMachineTemplate.spec;
    expect(vmSpec.template.spec.volumes).toEqual([{ name: 'containervolume', containerDisk: { image: REF, imagePullPolicy: 'IfNotPresent' } }]);
    expect(vmSpec.template.spec.domain.devices.disks).toEqual([{ name: 'containervolume', bootOrder: 1, disk: { bus: 'virtio' } }]);
    expect(vmSpec.template.spec.evictionStrategy).toBe('External');
    expect(vmSpec.template.spec.domain.devices.networkInterfaceMultiqueue).toBe(true);
    expect(kubevirtMachineTemplate.spec.template.spec.virtualMachineBootstrapCheck).toEqual({ checkStrategy: 'ssh' });
  });

  it('leaves bootstrap delivery to CAPK: no cloud-init volume of its own', () => {
    const text = renderKubevirtManifests(input).kubevirtMachineTemplate;
    expect(text).not.toMatch(/cloudInitNoCloud|cloudInitConfigDrive:/);
    expect(text).toMatch(/cloudInitConfigDrive volume/); // explained in the header comment
  });

  it('the structural check rejects a misplaced image', () => {
    const { kubevirtMachineTemplate } = docs();
    const broken = structuredClone(kubevirtMachineTemplate);
    broken.spec.template.spec.image = REF;
    expect(capkTemplateSchema.safeParse(broken).success).toBe(false);
  });
});

describe('without a pushed containerDisk', () => {
  const { containerDiskRef: _pushed, ...withoutRef } = input;
  const placeholder = 'registry.example.com/rocky-9:v1.36.1';

  it('names the placeholder in both containerDisk documents, each opening with a PLACEHOLDER line', () => {
    expect(placeholderContainerDiskRef('rocky-9', '1.36.1')).toBe(placeholder);
    const manifests = renderKubevirtManifests(withoutRef);
    for (const text of [manifests.containerDiskVirtualMachine, manifests.kubevirtMachineTemplate]) {
      expect(text.split('\n')[0]).toBe(
        `# PLACEHOLDER image: ${placeholder} is not a pushed image. Push the containerDisk (kib push) and pass the reference it prints with --containerdisk REF.`,
      );
    }
    const vm = parse(manifests.containerDiskVirtualMachine) as Doc;
    expect(vm.spec.template.spec.volumes[0].containerDisk.image).toBe(placeholder);
    const template = parse(manifests.kubevirtMachineTemplate) as Doc;
    expect(template.spec.template.spec.virtualMachineTemplate.spec.template.spec.volumes[0].containerDisk.image).toBe(placeholder);
    // The HTTP-import documents do not use the containerDisk and carry no mark.
    expect(`${manifests.dataVolume}${manifests.virtualMachine}`).not.toContain('PLACEHOLDER');
  });

  it('marks nothing when the pushed reference is given', () => {
    const stream = renderKubevirtManifestStream(renderKubevirtManifests(input));
    expect(stream).not.toContain('PLACEHOLDER');
    expect(stream).not.toContain(placeholder);
  });
});

describe('output', () => {
  it('is deterministic and forms a clean multi-document stream', () => {
    const first = renderKubevirtManifestStream(renderKubevirtManifests(input));
    expect(renderKubevirtManifestStream(renderKubevirtManifests(input))).toBe(first);
    const parsed = parseAllDocuments(first);
    expect(parsed).toHaveLength(4);
    for (const doc of parsed) {
      expect(doc.errors).toEqual([]);
      expect(doc.warnings).toEqual([]);
    }
    expect(parsed.map((doc) => (doc.toJS() as Doc).kind)).toEqual(['DataVolume', 'VirtualMachine', 'VirtualMachine', 'KubevirtMachineTemplate']);
    expect(first).not.toMatch(/&a\d|\*a\d/); // no YAML anchors or aliases
  });

  it('records provenance in annotations and keeps version strings as strings', () => {
    const { dataVolume } = docs({ imageVersion: '1.4', kubernetesVersion: '1.36.1' });
    expect(dataVolume.metadata.annotations).toEqual({
      'kube-image-builder/image-name': 'rocky-9',
      'kube-image-builder/image-version': '1.4',
      'kube-image-builder/kubernetes-version': '1.36.1',
      'kube-image-builder/sha256': SHA,
    });
  });

  it('derives DNS-1123 names from name and versions, shortening long ones with a hash', () => {
    const { dataVolume, virtualMachine, containerDiskVirtualMachine, kubevirtMachineTemplate } = docs({ imageVersion: '0.0.0-dev+1A2b3c4' });
    expect(virtualMachine.metadata.name).toBe('rocky-9-k8s-1-36-1-v0-0-0-dev-1a2b3c4');
    expect(dataVolume.metadata.name).toBe('rocky-9-k8s-1-36-1-v0-0-0-dev-1a2b3c4-disk');
    expect(kubevirtMachineTemplate.metadata.name).toBe('rocky-9-k8s-1-36-1-v0-0-0-dev-1a2b3c4-md');
    expect(containerDiskVirtualMachine.metadata.name).toBe('rocky-9-k8s-1-36-1-v0-0-0-dev-1a2b3c4-ephemeral');
    const long = docs({ imageName: 'a-very-long-image-name-for-a-kubernetes-node.example', imageVersion: '12.34.56-rc.7+build.8910' });
    for (const doc of Object.values(long)) {
      expect(doc.metadata.name.length).toBeLessThanOrEqual(63);
      expect(doc.metadata.name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    }
    expect(docs({ name: 'worker-image' }).virtualMachine.metadata.name).toBe('worker-image');
  });

  it('reports every invalid input field at once', () => {
    const error = (() => {
      try {
        renderKubevirtManifests({
          ...input,
          imageName: 'Rocky',
          kubernetesVersion: 'v1.36',
          httpUrl: 'ftp://x/y',
          sha256: 'abc',
          virtualSizeBytes: 0,
          containerDiskRef: 'has space',
          name: 'Bad_Name',
          memory: '4G',
        });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(KubevirtManifestInputError);
    const fields = (error as KubevirtManifestInputError).issues.map((issue) => issue.field);
    expect(fields).toEqual(['imageName', 'kubernetesVersion', 'httpUrl', 'sha256', 'virtualSizeBytes', 'containerDiskRef', 'name', 'memory']);
    expect((error as KubevirtManifestInputError).code).toBe('KUBEVIRT_MANIFEST_INPUT');
  });
});
