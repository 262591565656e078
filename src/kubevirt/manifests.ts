import { createHash } from 'node:crypto';
import { Document } from 'yaml';
import { KibError } from '../core/errors.js';

export interface KubevirtManifestInput {
  /** The image.yaml `name`, e.g. `rocky-9`. */
  imageName: string;
  /** Exact Kubernetes patch version in the image, e.g. `1.36.1`. */
  kubernetesVersion: string;
  /** The image version (git describe), e.g. `1.4.0` or `0.0.0-dev+1a2b3c4`. */
  imageVersion: string;
  /** Where `kib serve` offers the qcow2 (or raw) artifact, as CDI will reach it. */
  httpUrl: string;
  /** sha256 of the file at `httpUrl` (64 hex, with or without a `sha256:` prefix). */
  sha256: string;
  /** Virtual size of the disk image: the guest's root disk size before CDI grows it. */
  virtualSizeBytes: number;
  /**
   * The pushed containerDisk, ideally pinned: `registry/repo:tag@sha256:…`. When omitted, the
   * documents that boot a containerDisk carry `placeholderContainerDiskRef(…)` and a comment line
   * starting with `PLACEHOLDER` that says so.
   */
  containerDiskRef?: string;
  /** Base name of the resources (a DNS-1123 label); derived from name and versions when omitted. */
  name?: string;
  namespace?: string;
  storageClassName?: string;
  /** KubeVirt run strategy of the example VMs; CAPK's templates use Always. */
  runStrategy?: 'Always' | 'RerunOnFailure' | 'Manual' | 'Halted' | 'Once';
  cpuCores?: number;
  /** Guest memory as a Kubernetes quantity, e.g. `4Gi`. */
  memory?: string;
  /** KubeVirt defaults to BIOS; the image boots both. UEFI is rendered with Secure Boot off. */
  firmware?: 'bios' | 'uefi';
}

/** One YAML document per resource, each a complete `kubectl apply -f` input. */
export interface KubevirtManifests {
  /** CDI DataVolume importing the disk over HTTP from `kib serve`, checksum-verified. */
  dataVolume: string;
  /** VirtualMachine booting from that DataVolume (persistent disk). */
  virtualMachine: string;
  /** VirtualMachine booting the containerDisk (ephemeral disk). */
  containerDiskVirtualMachine: string;
  /** Cluster API KubeVirt provider (CAPK) KubevirtMachineTemplate using the containerDisk. */
  kubevirtMachineTemplate: string;
}

export class KubevirtManifestInputError extends KibError {
  readonly issues: readonly { field: string; message: string }[];

  constructor(issues: readonly { field: string; message: string }[]) {
    super(
      'KUBEVIRT_MANIFEST_INPUT',
      `Cannot render KubeVirt manifests, ${issues.length} problem${issues.length === 1 ? '' : 's'}:\n${issues.map((i) => `  ${i.field}: ${i.message}`).join('\n')}`,
    );
    this.issues = issues;
  }
}

/** What the containerDisk documents name when no pushed image is given: not pullable by design. */
export function placeholderContainerDiskRef(imageName: string, kubernetesVersion: string): string {
  return `registry.example.com/${imageName}:v${kubernetesVersion}`;
}

/** CDI's default filesystem overhead (`DefaultGlobalOverhead = "0.06"`). */
export const CDI_FILESYSTEM_OVERHEAD = 0.06;
const GIB = 1024n ** 3n;
const ANNOTATION_PREFIX = 'kube-image-builder';

/**
 * The PVC size, in whole GiB, that holds a disk of `virtualSizeBytes` after CDI's filesystem
 * overhead. CDI treats `overhead` as a fraction of the volume it cannot use, so the volume must
 * be at least virtual / (1 − overhead) — slightly more than virtual + 6 % — rounded up to Gi.
 */
export function dataVolumeStorageGi(virtualSizeBytes: number, overhead = CDI_FILESYSTEM_OVERHEAD): number {
  const usablePercent = BigInt(Math.round((1 - overhead) * 10_000));
  const numerator = BigInt(virtualSizeBytes) * 10_000n;
  const denominator = usablePercent * GIB;
  return Number((numerator + denominator - 1n) / denominator);
}

/**
 * Renders example KubeVirt, CDI and CAPK resources for a built image: one way to import it over
 * HTTP into a PVC and boot it, one way to boot the containerDisk, and the CAPK machine template
 * that makes it a Cluster API node image. Pure: same input, same text.
 */
export function renderKubevirtManifests(input: KubevirtManifestInput): KubevirtManifests {
  const issues = validate(input);
  if (issues.length > 0) throw new KubevirtManifestInputError(issues);

  const sha256 = input.sha256.replace(/^sha256:/, '').toLowerCase();
  const base = input.name ?? defaultBaseName(input);
  const names = {
    dataVolume: `${base}-disk`,
    vm: base,
    ephemeralVm: `${base}-ephemeral`,
    template: `${base}-md`,
  };
  const annotations = {
    [`${ANNOTATION_PREFIX}/image-name`]: input.imageName,
    [`${ANNOTATION_PREFIX}/image-version`]: input.imageVersion,
    [`${ANNOTATION_PREFIX}/kubernetes-version`]: input.kubernetesVersion,
    [`${ANNOTATION_PREFIX}/sha256`]: sha256,
  };
  const metadata = (name: string): Record<string, unknown> => ({
    name,
    ...(input.namespace === undefined ? {} : { namespace: input.namespace }),
    annotations,
  });
  const runStrategy = input.runStrategy ?? 'Always';
  const domain = (rootDisks: { name: string }[]): Record<string, unknown> => ({
    machine: { type: 'q35' },
    ...(input.firmware === 'uefi' ? { firmware: { bootloader: { efi: { secureBoot: false } } } } : {}),
    cpu: { cores: input.cpuCores ?? 2 },
    memory: { guest: input.memory ?? '4Gi' },
    devices: {
      disks: rootDisks.map((disk, index) => ({ name: disk.name, ...(index === 0 ? { bootOrder: 1 } : {}), disk: { bus: 'virtio' } })),
      interfaces: [{ name: 'default', masquerade: {} }],
      rng: {},
    },
  });
  const cloudInitVolume = {
    name: 'cloudinitdisk',
    cloudInitNoCloud: {
      userData: [
        '#cloud-config',
        '# Placeholder: add your user and SSH key here, e.g.',
        '# users:',
        '#   - name: admin',
        '#     sudo: ALL=(ALL) NOPASSWD:ALL',
        '#     ssh_authorized_keys: [ssh-ed25519 AAAA...]',
        '',
      ].join('\n'),
    },
  };
  const vmWith = (name: string, rootVolume: Record<string, unknown>): Record<string, unknown> => ({
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachine',
    metadata: metadata(name),
    spec: {
      runStrategy,
      template: {
        metadata: { labels: { 'kubevirt.io/vm': name } },
        spec: {
          domain: domain([{ name: 'rootdisk' }, { name: 'cloudinitdisk' }]),
          networks: [{ name: 'default', pod: {} }],
          volumes: [{ name: 'rootdisk', ...rootVolume }, cloudInitVolume],
        },
      },
    },
  });

  const dataVolume = {
    apiVersion: 'cdi.kubevirt.io/v1beta1',
    kind: 'DataVolume',
    metadata: metadata(names.dataVolume),
    spec: {
      source: { http: { url: input.httpUrl, checksum: `sha256:${sha256}` } },
      storage: {
        ...(input.storageClassName === undefined ? {} : { storageClassName: input.storageClassName }),
        resources: { requests: { storage: `${dataVolumeStorageGi(input.virtualSizeBytes)}Gi` } },
      },
    },
  };

  const containerDiskRef = input.containerDiskRef ?? placeholderContainerDiskRef(input.imageName, input.kubernetesVersion);
  const containerDisk = { image: containerDiskRef, imagePullPolicy: 'IfNotPresent' };
  const placeholderNote =
    input.containerDiskRef === undefined
      ? [`PLACEHOLDER image: ${containerDiskRef} is not a pushed image. Push the containerDisk (kib push) and pass the reference it prints with --containerdisk REF.`]
      : [];
  const capkDomain = domain([{ name: 'containervolume' }]);
  // No interfaces or networks: KubeVirt then attaches the pod network itself, as in CAPK's own templates.
  const { interfaces: _interfaces, ...capkDevices } = capkDomain.devices as Record<string, unknown>;
  const kubevirtMachineTemplate = {
    apiVersion: 'infrastructure.cluster.x-k8s.io/v1alpha1',
    kind: 'KubevirtMachineTemplate',
    metadata: metadata(names.template),
    spec: {
      template: {
        spec: {
          virtualMachineBootstrapCheck: { checkStrategy: 'ssh' },
          virtualMachineTemplate: {
            spec: {
              runStrategy: 'Always',
              template: {
                spec: {
                  // CAPK tears the VM down itself on eviction instead of letting KubeVirt migrate it.
                  evictionStrategy: 'External',
                  domain: {
                    ...capkDomain,
                    devices: { ...capkDevices, networkInterfaceMultiqueue: true },
                  },
                  volumes: [{ name: 'containervolume', containerDisk }],
                },
              },
            },
          },
        },
      },
    },
  };

  const header = `${input.imageName} ${input.imageVersion}, Kubernetes ${input.kubernetesVersion}, generated by kube-image-builder`;
  return {
    dataVolume: render(dataVolume, [
      header,
      `Imports ${input.httpUrl} into a PVC; CDI checks the sha256 (CDI 1.65 or newer) and converts it to raw.`,
      `Size: virtual ${input.virtualSizeBytes} bytes / (1 - ${CDI_FILESYSTEM_OVERHEAD} filesystem overhead), rounded up to Gi.`,
    ]),
    virtualMachine: render(vmWith(names.vm, { dataVolume: { name: names.dataVolume } }), [
      header,
      `Boots from the DataVolume ${names.dataVolume}; cloud-init grows the root filesystem to the PVC size.`,
    ]),
    containerDiskVirtualMachine: render(vmWith(names.ephemeralVm, { containerDisk }), [
      ...placeholderNote,
      header,
      'Boots the containerDisk: the root disk is ephemeral and keeps the image size; writes are lost on restart.',
    ]),
    kubevirtMachineTemplate: render(kubevirtMachineTemplate, [
      ...placeholderNote,
      header,
      'Cluster API KubeVirt provider machine template. CAPK adds the bootstrap data itself as a',
      'cloudInitConfigDrive volume (the image supports ConfigDrive) and checks /run/cluster-api/bootstrap-success.complete over SSH.',
    ]),
  };
}

/** All four documents as one multi-document YAML stream. */
export function renderKubevirtManifestStream(manifests: KubevirtManifests): string {
  return [manifests.dataVolume, manifests.virtualMachine, manifests.containerDiskVirtualMachine, manifests.kubevirtMachineTemplate]
    .map((doc) => `---\n${doc}`)
    .join('');
}

function render(value: Record<string, unknown>, comments: readonly string[]): string {
  const doc = new Document(value, { aliasDuplicateObjects: false });
  doc.commentBefore = comments.map((line) => ` ${line}`).join('\n');
  return doc.toString({ lineWidth: 0 });
}

/** `rocky-9-k8s-1-36-1-v1-4-0`, cut to fit a DNS label with room for the `-ephemeral` suffix. */
function defaultBaseName(input: KubevirtManifestInput): string {
  const raw = `${input.imageName}-k8s-${input.kubernetesVersion}-v${input.imageVersion}`;
  const label = raw
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-|-$/g, '');
  const max = 63 - '-ephemeral'.length;
  if (label.length <= max) return label;
  const hash = createHash('sha256').update(raw).digest('hex').slice(0, 8);
  return `${label.slice(0, max - 9).replace(/-$/, '')}-${hash}`;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function validate(input: KubevirtManifestInput): { field: string; message: string }[] {
  const issues: { field: string; message: string }[] = [];
  const add = (field: string, message: string): void => {
    issues.push({ field, message });
  };
  if (!/^[a-z0-9][a-z0-9.-]*$/.test(input.imageName)) add('imageName', `expected [a-z0-9][a-z0-9.-]*, got "${input.imageName}"`);
  if (!/^\d+\.\d+\.\d+$/.test(input.kubernetesVersion)) add('kubernetesVersion', `expected an exact version like 1.36.1, got "${input.kubernetesVersion}"`);
  if (input.imageVersion.trim() === '') add('imageVersion', 'must not be empty');
  let url: URL | undefined;
  try {
    url = new URL(input.httpUrl);
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) add('httpUrl', `expected an http(s) URL, got "${input.httpUrl}"`);
  if (!/^(sha256:)?[0-9a-fA-F]{64}$/.test(input.sha256)) add('sha256', `expected 64 hex digits, got "${input.sha256}"`);
  if (!Number.isSafeInteger(input.virtualSizeBytes) || input.virtualSizeBytes <= 0) add('virtualSizeBytes', `expected a positive whole number of bytes, got ${input.virtualSizeBytes}`);
  if (input.containerDiskRef !== undefined && (input.containerDiskRef.trim() === '' || /\s/.test(input.containerDiskRef))) add('containerDiskRef', `expected an image reference, got "${input.containerDiskRef}"`);
  if (input.name !== undefined && (!DNS_LABEL.test(input.name) || input.name.length > 63 - '-ephemeral'.length)) {
    add('name', `expected a DNS-1123 label of at most 53 characters, got "${input.name}"`);
  }
  if (input.namespace !== undefined && (!DNS_LABEL.test(input.namespace) || input.namespace.length > 63)) add('namespace', `expected a DNS-1123 label, got "${input.namespace}"`);
  if (input.cpuCores !== undefined && (!Number.isInteger(input.cpuCores) || input.cpuCores < 1)) add('cpuCores', `expected a positive integer, got ${input.cpuCores}`);
  if (input.memory !== undefined && !/^\d+(Ki|Mi|Gi|Ti)$/.test(input.memory)) add('memory', `expected a quantity like 4Gi, got "${input.memory}"`);
  return issues;
}
