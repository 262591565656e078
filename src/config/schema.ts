import * as z from 'zod';
import { parseDuration, parseSize } from './units.js';

/**
 * The one schema of image.yaml: it validates, fills in defaults, converts sizes and durations, and
 * its descriptions and `docType`s are what docs/configuration.md is generated from. Fields that
 * decide what the image *is* (name, base image, Kubernetes version) have no default on purpose:
 * a default there would change the image silently when kib is upgraded.
 */

export const OS_FAMILIES = ['redhat', 'debian'] as const;
export const PACKAGE_MODES = ['required', 'auto', 'skip'] as const;
export const SELINUX_MODES = ['permissive', 'enforcing'] as const;
export const ACCELERATORS = ['auto', 'kvm', 'tcg'] as const;
export const FIRMWARES = ['bios', 'uefi'] as const;
/** In canonical order: the resolved list is always sorted this way. */
export const OUTPUT_FORMATS = ['qcow2', 'raw', 'containerdisk'] as const;

export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export const MIN_DISK_BYTES = 2 * 1024 ** 3;
export const MIN_MEMORY_BYTES = 512 * 1024 ** 2;
export const MAX_CPUS = 64;
export const MAX_NAME_LENGTH = 63;
/** Variables with this prefix are set by kib itself (see the playbook contract). */
export const RESERVED_VAR_PREFIX = 'kib_';

const EXAMPLE_VERSION = '1.36.1';
const NAME_PATTERN = /^[a-z0-9][a-z0-9.-]*$/;
const SHA256_PATTERN = /^[0-9a-f]{64}$/;
const EXAMPLE_SERIES = '1.37';
const VERSION_PATTERN = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$/;
const SERIES_PATTERN = /^(0|[1-9]\d*)\.(0|[1-9]\d*)$/;
const URL_SCHEME = /^([a-zA-Z][a-zA-Z0-9+.-]*):/;
const ALLOWED_SCHEMES = new Set(['http', 'https', 'file']);

/** `docType` is how the field's type is shown in docs/configuration.md. */
function doc(meta: { description: string; docType: string; docDefault?: string }): Record<string, unknown> & { description: string; docType: string } {
  return { ...meta };
}

/** Describes an input for a message: strings quoted, containers by kind. */
export function describeInput(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);
  if (value === null) return 'an empty value';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return String(value);
}

/** Why a Kubernetes version is not an exact MAJOR.MINOR.PATCH release, or undefined if it is. */
export function kubernetesVersionProblem(value: unknown): string | undefined {
  if (typeof value === 'number') {
    return `expected an exact release like "${EXAMPLE_VERSION}", got the number ${String(value)} (YAML reads 1.36 as a number: write all three parts, MAJOR.MINOR.PATCH)`;
  }
  if (typeof value !== 'string') return `expected an exact release like "${EXAMPLE_VERSION}", got ${describeInput(value)}`;
  const text = value.trim();
  if (VERSION_PATTERN.test(text)) return undefined;
  const shown = JSON.stringify(value);
  if (/^[vV]\d+\.\d+\.\d+$/.test(text)) return `write the version without the "v": "${text.slice(1)}" instead of ${shown}`;
  if (/^[vV]?\d+\.\d+$/.test(text)) {
    return `${shown} names a minor series, not a release; pin an exact patch release like "${text.replace(/^[vV]/, '')}.0" (MAJOR.MINOR.PATCH), or write series: "${text.replace(/^[vV]/, '')}" instead of version to follow the series' newest patch`;
  }
  if (/^(latest|stable|newest|current)(-\d+(\.\d+)?)?$/i.test(text)) {
    return `${shown} moves over time; pin an exact release like "${EXAMPLE_VERSION}" so the same image.yaml always builds the same image`;
  }
  if (/^[vV]?\d+\.\d+\.\d+[-+]/.test(text)) {
    return `pre-releases and build suffixes are not supported; pin a released version like "${EXAMPLE_VERSION}", got ${shown}`;
  }
  if (/[~^<>=*|xX]|\s-\s|,/.test(text) || /\.[xX*]/.test(text)) {
    return `version ranges are not allowed; pin one exact release like "${EXAMPLE_VERSION}", got ${shown}`;
  }
  return `expected an exact release like "${EXAMPLE_VERSION}" (MAJOR.MINOR.PATCH), got ${shown}`;
}

/** Why a Kubernetes series is not MAJOR.MINOR, or undefined if it is. */
export function kubernetesSeriesProblem(value: unknown): string | undefined {
  if (typeof value === 'number') {
    return `write the series as a quoted string like "${EXAMPLE_SERIES}": YAML reads an unquoted ${String(value)} as a number (and 1.30 as 1.3)`;
  }
  if (typeof value !== 'string') return `expected a minor series like "${EXAMPLE_SERIES}", got ${describeInput(value)}`;
  const text = value.trim();
  if (SERIES_PATTERN.test(text)) return undefined;
  const shown = JSON.stringify(value);
  if (/^[vV]\d+\.\d+$/.test(text)) return `write the series without the "v": "${text.slice(1)}" instead of ${shown}`;
  if (/^[vV]?\d+\.\d+\.\d+$/.test(text)) {
    return `${shown} is an exact release, not a series; write version: "${text.replace(/^[vV]/, '')}" to pin it, or series: "${text.replace(/^[vV]/, '').split('.').slice(0, 2).join('.')}" to follow the newest patch`;
  }
  return `expected a minor series like "${EXAMPLE_SERIES}" (MAJOR.MINOR), got ${shown}`;
}

/** Why a base location is neither an http(s)/file URL nor a path, or undefined if it is fine. */
export function locationProblem(value: string): string | undefined {
  const text = value.trim();
  if (text === '') return 'must not be empty';
  const scheme = URL_SCHEME.exec(text)?.[1]?.toLowerCase();
  // One letter before ':' is a Windows drive, not a scheme; we treat it as a path.
  if (scheme === undefined || scheme.length === 1) return undefined;
  if (!ALLOWED_SCHEMES.has(scheme)) return `expected an http(s) or file URL or a local path, got the scheme "${scheme}:"`;
  try {
    new URL(text);
  } catch {
    return `is not a valid URL: ${JSON.stringify(value)}`;
  }
  return undefined;
}

export function sha256Problem(value: unknown): string | undefined {
  if (typeof value === 'string' && SHA256_PATTERN.test(value)) return undefined;
  if (typeof value === 'string' && /^[0-9a-fA-F]{64}$/.test(value)) return 'expected 64 lowercase hex digits (write the sha256 in lowercase)';
  if (typeof value === 'string' && /^sha256:/i.test(value)) return 'write the bare hex digits without the "sha256:" prefix';
  return `expected a sha256 of 64 lowercase hex digits, got ${describeInput(value)}`;
}

function custom<T>(check: (value: unknown) => { ok: true; value: T } | { ok: false; message: string }) {
  return z.unknown().transform((value, ctx): T => {
    const result: { ok: true; value: T } | { ok: false; message: string } = value === undefined ? { ok: false, message: 'required' } : check(value);
    if (result.ok) return result.value;
    ctx.addIssue({ code: 'custom', message: result.message });
    return z.NEVER;
  });
}

function nonEmptyString(value: unknown): { ok: true; value: string } | { ok: false; message: string } {
  if (typeof value !== 'string') return { ok: false, message: `expected a string, got ${describeInput(value)}` };
  if (value.trim() === '') return { ok: false, message: 'must not be empty' };
  return { ok: true, value: value.trim() };
}

function sizeField(minBytes: number, minLabel: string, unitBytes = 1, unitLabel = '') {
  return custom<number>((value) => {
    if (typeof value !== 'string' && typeof value !== 'number') {
      return { ok: false, message: `expected a size like "20G", got ${describeInput(value)}` };
    }
    let bytes: number;
    try {
      bytes = parseSize(value);
    } catch (error) {
      return { ok: false, message: (error as Error).message };
    }
    if (bytes < minBytes) return { ok: false, message: `must be at least ${minLabel}, got ${describeInput(value)}` };
    if (bytes % unitBytes !== 0) return { ok: false, message: `must be a whole number of ${unitLabel}, got ${describeInput(value)}` };
    return { ok: true, value: bytes };
  });
}

const nameField = custom<string>((value) => {
  const text = nonEmptyString(value);
  if (!text.ok) return text;
  if (text.value.length > MAX_NAME_LENGTH) return { ok: false, message: `must be at most ${MAX_NAME_LENGTH} characters` };
  if (!NAME_PATTERN.test(text.value)) {
    return {
      ok: false,
      message: `expected lowercase letters, digits, "." and "-", starting with a letter or digit, got ${describeInput(value)}`,
    };
  }
  return text;
}).meta(doc({ docType: 'string', description: 'Name prefix of every artifact (`[a-z0-9][a-z0-9.-]*`, at most 63 characters), e.g. `rocky-9`.' }));

function locationField(description: string) {
  return custom<string>((value) => {
    const text = nonEmptyString(value);
    if (!text.ok) return text;
    const problem = locationProblem(text.value);
    return problem === undefined ? text : { ok: false, message: problem };
  }).meta(doc({ docType: 'URL or path', description }));
}

const sha256Field = custom<string>((value) => {
  const problem = sha256Problem(value);
  return problem === undefined ? { ok: true, value: value as string } : { ok: false, message: problem };
}).meta(
  doc({
    docType: 'sha256 (64 hex)',
    description:
      'Expected sha256 of the base image. When set, the download is verified against it and the checksum file is not fetched; an image already in the cache with this sha256 is used without any network access.',
  }),
);

const versionField = custom<string>((value) => {
  const problem = kubernetesVersionProblem(value);
  return problem === undefined ? { ok: true, value: (value as string).trim() } : { ok: false, message: problem };
}).meta(
  doc({
    docType: 'version',
    description:
      'The one Kubernetes release in the image, exactly `MAJOR.MINOR.PATCH` (no `v`, no ranges, no `latest`). kubeadm, kubelet and kubectl are all installed at this version; with a lock file for it, every Kubernetes package is installed at the exact build the lock records. Set this or `series`, not both.',
    docDefault: '*required* (or `series`)',
  }),
);

const seriesField = custom<string>((value) => {
  const problem = kubernetesSeriesProblem(value);
  return problem === undefined ? { ok: true, value: (value as string).trim() } : { ok: false, message: problem };
}).meta(
  doc({
    docType: 'series',
    description:
      'Instead of `version`: a minor series in quotes, e.g. `"1.37"`. `kib lock --update` resolves it to the newest patch release in the series\' pkgs.k8s.io repository and records that release and the exact package versions in the lock file; a build installs what the lock records and refuses to start without a lock for this series. Set this or `version`, not both.',
  }),
);

function durationField(minMs: number, maxMs: number) {
  return custom<number>((value) => {
    if (typeof value !== 'string' && typeof value !== 'number') {
      return { ok: false, message: `expected a duration like "10m", got ${describeInput(value)}` };
    }
    let ms: number;
    try {
      ms = parseDuration(value);
    } catch (error) {
      return { ok: false, message: (error as Error).message };
    }
    if (ms < minMs) return { ok: false, message: `must be at least ${String(minMs / 1000)}s, got ${describeInput(value)}` };
    if (ms > maxMs) return { ok: false, message: `must be at most ${String(maxMs / 3_600_000)}h, got ${describeInput(value)}` };
    return { ok: true, value: ms };
  });
}

/** An IPv4 or IPv6 network in CIDR notation, as firewalld takes it. */
export function cidrProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return `expected a CIDR like "10.244.0.0/16", got ${describeInput(value)}`;
  const match = /^([^/]+)\/(\d{1,3})$/.exec(value.trim());
  if (match === null) return `expected a CIDR like "10.244.0.0/16" (address/prefix), got ${describeInput(value)}`;
  const address = match[1] as string;
  const prefix = Number(match[2]);
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(address);
  if (v4 !== null) {
    if (v4.slice(1).some((octet) => Number(octet) > 255)) return `${describeInput(value)} is not an IPv4 address`;
    if (prefix > 32) return `an IPv4 prefix is at most /32, got ${describeInput(value)}`;
    return undefined;
  }
  if (/^[0-9a-fA-F:]+$/.test(address) && address.includes(':')) {
    if (prefix > 128) return `an IPv6 prefix is at most /128, got ${describeInput(value)}`;
    return undefined;
  }
  return `expected a CIDR like "10.244.0.0/16", got ${describeInput(value)}`;
}

function cidrListField(description: string) {
  return z
    .array(
      custom<string>((value) => {
        const problem = cidrProblem(value);
        return problem === undefined ? { ok: true, value: (value as string).trim() } : { ok: false, message: problem };
      }),
    )
    .meta(doc({ docType: 'list of CIDRs', description }));
}

/** `PORT/PROTOCOL` or `FROM-TO/PROTOCOL`, as firewalld writes ports. */
export function portProblem(value: unknown): string | undefined {
  const text = typeof value === 'number' ? String(value) : value;
  if (typeof text !== 'string') return `expected a port like "4789/udp", got ${describeInput(value)}`;
  const match = /^(\d{1,5})(?:-(\d{1,5}))?\/(tcp|udp|sctp)$/.exec(text.trim());
  if (match === null) return `expected PORT/PROTOCOL like "4789/udp" (protocol tcp, udp or sctp), got ${describeInput(value)}`;
  const from = Number(match[1]);
  const to = match[2] === undefined ? from : Number(match[2]);
  if (from < 1 || to > 65535 || to < from) return `expected ports between 1 and 65535 (FROM-TO ascending), got ${describeInput(value)}`;
  return undefined;
}

const portListField = z
  .array(
    custom<string>((value) => {
      const problem = portProblem(value);
      return problem === undefined ? { ok: true, value: (value as string).trim() } : { ok: false, message: problem };
    }),
  )
  .meta(
    doc({
      docType: 'list of PORT/PROTOCOL',
      description:
        'Ports the CNI uses between nodes, opened on the node\'s NICs: VXLAN (`4789/udp` Calico, `8472/udp` flannel and Cilium), BGP (`179/tcp` Calico). Ranges are written `FROM-TO/udp`.',
    }),
  );

/** kubeadm's default Service network; kubeadm has no default pod network, 10.244.0.0/16 is its documentation's. */
export const DEFAULT_POD_CIDRS = ['10.244.0.0/16'];
export const DEFAULT_SERVICE_CIDRS = ['10.96.0.0/12'];
export const DEFAULT_OVERLAY_PORTS = ['4789/udp', '8472/udp', '179/tcp'];

const formatsField = z
  .array(z.enum(OUTPUT_FORMATS))
  .transform((formats, ctx): OutputFormat[] => {
    const seen = new Set<OutputFormat>();
    formats.forEach((format, index) => {
      if (seen.has(format)) ctx.addIssue({ code: 'custom', path: [index], message: `"${format}" is listed more than once` });
      seen.add(format);
    });
    // qcow2 is the artifact every other format is made from, so it is always produced.
    seen.add('qcow2');
    return OUTPUT_FORMATS.filter((format) => seen.has(format));
  })
  .meta(
    doc({
      docType: 'list of `qcow2`, `raw`, `containerdisk`',
      description:
        'Artifacts to produce. `qcow2` (flattened, no backing file) is always produced and added if missing; `raw` is the plain disk; `containerdisk` is a KubeVirt containerDisk OCI archive with the disk at `/disk/`. Each may appear once.',
    }),
  );

const varsField = z
  .record(z.string(), z.unknown())
  .superRefine((vars, ctx) => {
    for (const key of Object.keys(vars)) {
      if (key.startsWith(RESERVED_VAR_PREFIX)) {
        ctx.addIssue({ code: 'custom', path: [key], message: `variables starting with "${RESERVED_VAR_PREFIX}" are set by kib itself; choose another name` });
      }
    }
  })
  .meta(
    doc({
      docType: 'mapping',
      description: `Extra Ansible variables passed to the playbook unchanged (as extra vars). Names starting with \`${RESERVED_VAR_PREFIX}\` are reserved for the variables kib sets.`,
    }),
  );

export const imageConfigSchema = z
  .strictObject({
    name: nameField,
    base: z
      .strictObject({
        url: locationField(
          'The base cloud image: an `https://`, `http://` or `file://` URL, or a local path (relative to this file). Pin a specific point release, not a `latest` link.',
        ),
        checksumUrl: locationField(
          'A checksum file that lists the base image: GNU `sha256sum` style (`<hex>  <file>`) or BSD style (`SHA256 (<file>) = <hex>`); PGP clear-signed files are accepted. Used when `sha256` is not set.',
        ).optional(),
        sha256: sha256Field.optional(),
        osFamily: z.enum(OS_FAMILIES).default('redhat').meta(
          doc({ docType: 'enum', description: 'Guest OS family of the base image; selects the package manager and repositories the playbook uses.' }),
        ),
      })
      .meta(doc({ docType: 'mapping', description: 'The cloud image the build starts from.' })),
    kubernetes: z
      .strictObject({
        version: versionField.optional(),
        series: seriesField.optional(),
        packages: z.enum(PACKAGE_MODES).default('required').meta(
          doc({
            docType: 'enum',
            description:
              '`required`: the build fails if the Kubernetes packages cannot be installed. `auto`: when the package source is unreachable from the build VM, the Kubernetes tasks are skipped and the reason is recorded in the build manifest. `skip`: never install them.',
          }),
        ),
      })
      .superRefine((kubernetes, ctx) => {
        if (kubernetes.version === undefined && kubernetes.series === undefined) {
          ctx.addIssue({
            code: 'custom',
            path: ['version'],
            message: `required: an exact release like "${EXAMPLE_VERSION}", or instead series: "${EXAMPLE_SERIES}" for the newest patch of a series (resolved by kib lock --update)`,
          });
        } else if (kubernetes.version !== undefined && kubernetes.series !== undefined) {
          ctx.addIssue({
            code: 'custom',
            path: ['series'],
            message: `set either version (an exact release) or series (its newest patch, resolved by kib lock --update), not both`,
          });
        }
      })
      .meta(doc({ docType: 'mapping', description: 'What Kubernetes goes into the image.' })),
    node: z
      .strictObject({
        selinux: z.enum(SELINUX_MODES).default('permissive').meta(
          doc({
            docType: 'enum',
            description:
              'SELinux mode of the image. Only meaningful for the `redhat` family; for `debian` it is ignored (with a warning when set). `enforcing` is experimental: see docs/playbook.md for the kubeadm patches the control plane needs.',
          }),
        ),
        firewall: z.boolean().default(true).meta(
          doc({
            docType: 'boolean',
            description:
              'Set up the host firewall (firewalld) for Kubernetes: control-plane, node and overlay ports open on the node\'s NICs, everything else closed; CNI interfaces and the pod and Service networks in an accepting zone of their own, so pod traffic is forwarded between nodes.',
          }),
        ),
        network: z
          .strictObject({
            podCidrs: cidrListField(
              'Pod networks the firewall accepts and forwards. kubeadm has no default; `10.244.0.0/16` is what its documentation and flannel use. Match `kubeadm init --pod-network-cidr` (Calico\'s default is `192.168.0.0/16`).',
            ).prefault([...DEFAULT_POD_CIDRS]),
            serviceCidrs: cidrListField('Service networks the firewall accepts; `10.96.0.0/12` is kubeadm\'s default `serviceSubnet`.').prefault([...DEFAULT_SERVICE_CIDRS]),
            overlayPorts: portListField.prefault([...DEFAULT_OVERLAY_PORTS]),
          })
          .prefault({})
          .meta(doc({ docType: 'mapping', description: 'The cluster networks the image\'s firewall lets through (used when `firewall` is true).' })),
      })
      .prefault({})
      .meta(doc({ docType: 'mapping', description: 'Operating system settings of the image.' })),
    disk: z
      .strictObject({
        size: sizeField(MIN_DISK_BYTES, '2G')
          .prefault('20G')
          .meta(
            doc({
              docType: 'size',
              description:
                'Virtual size of the image disk, e.g. `20G` (K, M, G, T are powers of 1024) or a byte count; at least `2G`. The root filesystem grows to fill it on first boot. A KubeVirt containerDisk keeps this size.',
            }),
          ),
      })
      .prefault({})
      .meta(doc({ docType: 'mapping', description: 'The image disk.' })),
    vm: z
      .strictObject({
        cpus: z.int().min(1).max(MAX_CPUS).default(2).meta(doc({ docType: 'integer', description: `Virtual CPUs of the build VM (1 to ${MAX_CPUS}).` })),
        memory: sizeField(MIN_MEMORY_BYTES, '512M', 1024 ** 2, 'MiB')
          .prefault('2G')
          .meta(doc({ docType: 'size', description: 'Memory of the build VM, e.g. `2G`; at least `512M`, in whole MiB.' })),
        accelerator: z.enum(ACCELERATORS).default('auto').meta(
          doc({
            docType: 'enum',
            description: '`auto` uses KVM when it actually works on this host and falls back to TCG (software emulation); `kvm` and `tcg` force one.',
          }),
        ),
        firmware: z.enum(FIRMWARES).default('bios').meta(doc({ docType: 'enum', description: 'Firmware of the build VM: `bios` (SeaBIOS) or `uefi` (OVMF).' })),
        bootTimeout: durationField(1000, 24 * 3_600_000)
          .prefault('10m')
          .meta(
            doc({
              docType: 'duration',
              description: 'How long the build VM may take to become reachable over SSH, e.g. `30s`, `10m`, `1h`. Software emulation (TCG) is several times slower than KVM.',
            }),
          ),
      })
      .prefault({})
      .meta(doc({ docType: 'mapping', description: 'The VM that runs the build (not the finished image).' })),
    provision: z
      .strictObject({
        playbook: custom<string>(nonEmptyString)
          .prefault('playbook/site.yml')
          .meta(doc({ docType: 'path', description: 'The Ansible playbook run inside the build VM, relative to this file.' })),
        vars: varsField.default({}),
      })
      .prefault({})
      .meta(doc({ docType: 'mapping', description: 'How the build VM is configured.' })),
    outputs: z
      .strictObject({
        dir: custom<string>(nonEmptyString)
          .prefault('output')
          .meta(doc({ docType: 'path', description: 'Directory the finished artifacts are moved into, relative to this file (`--output` overrides it, relative to the working directory).' })),
        formats: formatsField.prefault(['qcow2', 'containerdisk']),
        compress: z.boolean().default(true).meta(doc({ docType: 'boolean', description: 'Compress the qcow2 artifact (`qemu-img convert -c`): smaller downloads, slower first reads.' })),
      })
      .prefault({})
      .meta(doc({ docType: 'mapping', description: 'What the build produces and where.' })),
  })
  .meta(doc({ docType: 'mapping', description: 'The build definition.' }));

/** image.yaml as the user may write it (before defaults). */
export type ImageConfigInput = z.input<typeof imageConfigSchema>;
/** image.yaml after validation: defaults filled in, sizes in bytes, durations in milliseconds. */
export type ImageConfig = z.output<typeof imageConfigSchema>;
