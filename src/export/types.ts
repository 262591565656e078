import type { GuestInventory } from '../core/inventory.js';

/** The guest inventory is defined (and parsed) in src/core/inventory.ts; export only reads it. */
export type { GuestInventory };

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
