import { z } from 'zod';
import { KibError } from './errors.js';

/**
 * The facts of one build, in one record: what the image is, what it was made from and how. The
 * pipeline assembles it once (src/pipeline/facts.ts); every other view is produced from it by a
 * function here — the playbook's kib_* variables, manifest.json's sections — and manifest.json is
 * read back through the same schema, so writer and readers cannot drift apart.
 */

const sha256Schema = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex digits');
const versionSchema = z.string().regex(/^\d+\.\d+\.\d+$/, 'expected MAJOR.MINOR.PATCH');
const rfc3339Schema = z.string().regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/, 'expected an RFC 3339 UTC time');

export const osFamilySchema = z.enum(['redhat', 'debian']);
export const selinuxSchema = z.enum(['permissive', 'enforcing']);
export const kubernetesPackagesSchema = z.enum(['required', 'auto', 'skip']);

export const buildFactsSchema = z.strictObject({
  image: z.strictObject({
    name: z.string().min(1),
    /** `git describe --tags`, or `0.0.0-dev+<shortsha>`, or `0.0.0-unknown` outside Git. */
    version: z.string().min(1),
    /** Null outside a Git work tree. */
    commit: z.string().nullable(),
  }),
  kubernetes: z.strictObject({
    version: versionSchema,
    packages: kubernetesPackagesSchema,
    /** Exact package builds from image.lock (`1.37.1-150500.1.1`); null when no lock applies. */
    lockedPackages: z.record(z.string(), z.string()).nullable(),
  }),
  node: z.strictObject({
    selinux: selinuxSchema,
    firewall: z.boolean(),
    /** The cluster networks the firewall lets through (image.yaml node.network). */
    network: z.strictObject({ podCidrs: z.array(z.string()), serviceCidrs: z.array(z.string()), overlayPorts: z.array(z.string()) }),
  }),
  base: z.strictObject({ url: z.string().min(1), sha256: sha256Schema, osFamily: osFamilySchema }),
  disk: z.strictObject({ sizeBytes: z.number().int().positive() }),
  /** Null path: the embedded default build definition. */
  config: z.strictObject({ path: z.string().nullable(), sha256: sha256Schema }),
  /** `hashTree` of the playbook directory, and the build definition's provision.vars. */
  playbook: z.strictObject({ sha256: sha256Schema, vars: z.record(z.string(), z.unknown()) }),
  tool: z.strictObject({ name: z.string().min(1), version: z.string().min(1) }),
  build: z.strictObject({
    /** RFC 3339 UTC, seconds: the date written into the image, the SBOM and the containerDisk. */
    date: rfc3339Schema,
    accelerator: z.enum(['kvm', 'tcg']),
    hostArch: z.string().min(1),
  }),
});

export type BuildFacts = z.infer<typeof buildFactsSchema>;

/**
 * The extra variables every playbook run gets from the facts (docs/playbook.md describes them).
 * provision.vars come first, so a kib_* name in them cannot override a fact.
 */
export function playbookVarsFromFacts(facts: BuildFacts): Record<string, unknown> & FactPlaybookVars {
  return {
    ...facts.playbook.vars,
    kib_kubernetes_version: facts.kubernetes.version,
    kib_kubernetes_packages: facts.kubernetes.packages,
    kib_kubernetes_locked_packages: facts.kubernetes.lockedPackages ?? {},
    kib_selinux: facts.node.selinux,
    kib_firewall: facts.node.firewall,
    kib_pod_cidrs: facts.node.network.podCidrs,
    kib_service_cidrs: facts.node.network.serviceCidrs,
    kib_overlay_ports: facts.node.network.overlayPorts,
    kib_os_family: facts.base.osFamily,
    kib_image_name: facts.image.name,
    kib_image_version: facts.image.version,
    kib_git_commit: facts.image.commit ?? 'unknown',
    kib_base_sha256: facts.base.sha256,
    kib_base_url: facts.base.url,
    kib_build_date: facts.build.date,
  };
}

export interface FactPlaybookVars {
  kib_kubernetes_version: string;
  kib_kubernetes_packages: 'required' | 'auto' | 'skip';
  /**
   * Exact package versions from the lock file (`{kubeadm: "1.37.2-150500.1.1", …}`), installed
   * exactly; empty without a lock, and then the repository's builds of kib_kubernetes_version
   * (and its newest cri-tools and kubernetes-cni) are installed.
   */
  kib_kubernetes_locked_packages: Record<string, string>;
  kib_selinux: 'permissive' | 'enforcing';
  kib_firewall: boolean;
  kib_pod_cidrs: string[];
  kib_service_cidrs: string[];
  /** PORT/PROTOCOL */
  kib_overlay_ports: string[];
  kib_os_family: 'redhat' | 'debian';
  kib_image_name: string;
  kib_image_version: string;
  kib_git_commit: string;
  kib_base_sha256: string;
  kib_base_url: string;
  kib_build_date: string;
}

export const MANIFEST_SCHEMA_VERSION = 2;

const manifestArtifactSchema = z.strictObject({
  /** File name relative to the manifest's directory. */
  file: z.string().min(1),
  kind: z.enum(['qcow2', 'raw', 'containerdisk', 'sha256sums', 'manifest', 'sbom', 'log']),
  sizeBytes: z.number().int().nonnegative(),
  sha256: sha256Schema,
  format: z.enum(['qcow2', 'raw']).optional(),
  virtualSizeBytes: z.number().int().nonnegative().optional(),
});

const facts = buildFactsSchema.shape;

/**
 * manifest.json: the build facts (spread over sections readers already know), what the build
 * measured, the guest's outcome and the files that came out. Sections reuse the facts' schemas.
 */
export const buildManifestSchema = z.strictObject({
  schemaVersion: z.literal(MANIFEST_SCHEMA_VERSION),
  tool: facts.tool,
  image: facts.image.extend({ kubernetesVersion: versionSchema }),
  base: facts.base,
  node: facts.node,
  disk: facts.disk,
  config: facts.config,
  playbook: facts.playbook,
  build: z.strictObject({
    date: rfc3339Schema,
    startedAt: rfc3339Schema,
    finishedAt: rfc3339Schema,
    phases: z.strictObject({ preflight: z.number(), base: z.number(), provision: z.number(), export: z.number() }),
    provisionSteps: z.record(z.string(), z.number()),
    accelerator: facts.build.shape.accelerator,
    hostArch: facts.build.shape.hostArch,
  }),
  kubernetes: z.strictObject({
    /** What the build asked for (facts) … */
    packages: kubernetesPackagesSchema,
    lockedPackages: z.record(z.string(), z.string()).nullable(),
    /** … and what the guest ended up with (from its inventory). */
    installed: z.boolean(),
    version: z.string().nullable(),
    skippedReason: z.string().nullable(),
  }),
  guest: z.strictObject({
    os: z.strictObject({ id: z.string(), versionId: z.string(), prettyName: z.string() }),
    packages: z.number().int().nonnegative(),
    binaries: z.number().int().nonnegative(),
    images: z.number().int().nonnegative(),
  }),
  artifacts: z.array(manifestArtifactSchema),
});

export type BuildManifest = z.infer<typeof buildManifestSchema>;
export type ManifestArtifact = z.infer<typeof manifestArtifactSchema>;

/** The facts sections of a manifest, in the manifest's key order. */
export function manifestSectionsFromFacts(f: BuildFacts): Pick<BuildManifest, 'tool' | 'image' | 'base' | 'node' | 'disk' | 'config' | 'playbook'> {
  return {
    tool: { name: f.tool.name, version: f.tool.version },
    image: { name: f.image.name, version: f.image.version, commit: f.image.commit, kubernetesVersion: f.kubernetes.version },
    base: { url: f.base.url, sha256: f.base.sha256, osFamily: f.base.osFamily },
    node: { selinux: f.node.selinux, firewall: f.node.firewall, network: f.node.network },
    disk: { sizeBytes: f.disk.sizeBytes },
    config: { path: f.config.path, sha256: f.config.sha256 },
    playbook: { sha256: f.playbook.sha256, vars: f.playbook.vars },
  };
}

/** The inverse of manifestSectionsFromFacts (plus the build and kubernetes sections' facts). */
export function factsFromManifest(m: BuildManifest): BuildFacts {
  return buildFactsSchema.parse({
    image: { name: m.image.name, version: m.image.version, commit: m.image.commit },
    kubernetes: { version: m.image.kubernetesVersion, packages: m.kubernetes.packages, lockedPackages: m.kubernetes.lockedPackages },
    node: m.node,
    base: m.base,
    disk: m.disk,
    config: m.config,
    playbook: m.playbook,
    tool: m.tool,
    build: { date: m.build.date, accelerator: m.build.accelerator, hostArch: m.build.hostArch },
  });
}

/** Parses manifest.json text (or an already parsed value) through the manifest schema. */
export function parseBuildManifest(input: string | unknown, source = 'manifest.json'): BuildManifest {
  let value: unknown = input;
  if (typeof input === 'string') {
    try {
      value = JSON.parse(input);
    } catch (error) {
      throw new KibError('MANIFEST_INVALID', `${source} is not JSON: ${(error as Error).message}`);
    }
  }
  const parsed = buildManifestSchema.safeParse(value);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`);
    const version = typeof value === 'object' && value !== null ? (value as { schemaVersion?: unknown }).schemaVersion : undefined;
    throw new KibError('MANIFEST_INVALID', `${source} is not a kib build manifest (schema ${MANIFEST_SCHEMA_VERSION}): ${issues.slice(0, 8).join('; ')}${issues.length > 8 ? `; and ${issues.length - 8} more` : ''}`, {
      hint:
        version !== undefined && version !== MANIFEST_SCHEMA_VERSION
          ? `It says schemaVersion ${String(version)}; rebuild the image with this kib, or pass the build definition with --config so verify can work from the image's release file.`
          : 'Pass the manifest.json written with the artifact (--manifest FILE).',
    });
  }
  return parsed.data;
}
