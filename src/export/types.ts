/**
 * What the export phase is handed besides the disk. The guest inventory mirrors the JSON the
 * playbook writes to /var/lib/kib/inventory.json; provisioning parses it, export only reads it.
 */
export interface GuestInventory {
  os: { id: string; versionId: string; prettyName: string };
  packages: readonly { name: string; version: string; arch: string; manager: 'rpm' | 'dpkg' }[];
  binaries: readonly { name: string; path: string; version: string; sha256: string }[];
  images: readonly { ref: string; digest: string }[];
  kubernetes: { installed: boolean; skippedReason: string | null; version: string | null };
}

/** Facts about the build that end up in manifest.json, the SBOM and the containerDisk labels. */
export interface ExportMeta {
  toolName: string;
  toolVersion: string;
  imageName: string;
  /** `git describe --tags`, or `0.0.0-dev+<shortsha>`. */
  imageVersion: string;
  /** Undefined outside a Git work tree. */
  commit: string | undefined;
  kubernetesVersion: string;
  base: { url: string; sha256: string; osFamily: 'redhat' | 'debian' };
  /** The node settings the image was built with; `kib verify` checks the image against them. */
  node: { selinux: 'permissive' | 'enforcing'; firewall: boolean };
  /** Undefined path: the embedded default build definition. */
  config: { path: string | undefined; sha256: string };
  /** `hashTree` of the playbook directory. */
  playbookSha256: string;
  /** RFC 3339 UTC: the build date the playbook got; also the SBOM's and the containerDisk's date. */
  startedAt: string;
  /** Durations of the phases before export. */
  phasesMs: { preflight: number; base: number; provision: number };
  provisionStepsMs?: Readonly<Record<string, number>>;
  accelerator: 'kvm' | 'tcg';
  hostArch: string;
}
