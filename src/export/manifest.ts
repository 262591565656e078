import type { ArtifactKind } from '../core/types.js';
import { compareBytes } from './hash.js';
import type { DiskFormat } from './qemu-img.js';
import type { ExportMeta, GuestInventory } from './types.js';

export const MANIFEST_FILE = 'manifest.json';
export const MANIFEST_SCHEMA_VERSION = 1;

export interface ManifestArtifact {
  /** File name relative to the manifest's directory. */
  file: string;
  kind: ArtifactKind;
  sizeBytes: number;
  sha256: string;
  format?: DiskFormat;
  virtualSizeBytes?: number;
}

export interface BuildManifestInput {
  meta: ExportMeta;
  inventory: GuestInventory;
  /** RFC 3339 UTC, when the export wrote the manifest. */
  finishedAt: string;
  exportMs: number;
  artifacts: readonly ManifestArtifact[];
}

/** manifest.json: what was built, from what, how, and which files came out. */
export interface BuildManifest {
  schemaVersion: number;
  tool: { name: string; version: string };
  image: { name: string; version: string; commit: string | null; kubernetesVersion: string };
  base: { url: string; sha256: string; osFamily: 'redhat' | 'debian' };
  node: { selinux: 'permissive' | 'enforcing'; firewall: boolean };
  config: { path: string | null; sha256: string };
  playbook: { sha256: string };
  build: {
    startedAt: string;
    finishedAt: string;
    phases: { preflight: number; base: number; provision: number; export: number };
    provisionSteps: Record<string, number>;
    accelerator: 'kvm' | 'tcg';
    hostArch: string;
  };
  kubernetes: { installed: boolean; version: string | null; skippedReason: string | null };
  guest: { os: { id: string; versionId: string; prettyName: string }; packages: number; binaries: number; images: number };
  artifacts: ManifestArtifact[];
}

/**
 * Builds the manifest object with its keys in one fixed order (the object literals below) and
 * artifacts sorted by file name, so equal inputs serialize to equal bytes. Durations are in ms.
 */
export function buildManifest(input: BuildManifestInput): BuildManifest {
  const { meta, inventory } = input;
  const steps = meta.provisionStepsMs ?? {};
  return {
    schemaVersion: MANIFEST_SCHEMA_VERSION,
    tool: { name: meta.toolName, version: meta.toolVersion },
    image: {
      name: meta.imageName,
      version: meta.imageVersion,
      commit: meta.commit ?? null,
      kubernetesVersion: meta.kubernetesVersion,
    },
    base: { url: meta.base.url, sha256: meta.base.sha256, osFamily: meta.base.osFamily },
    node: { selinux: meta.node.selinux, firewall: meta.node.firewall },
    config: { path: meta.config.path ?? null, sha256: meta.config.sha256 },
    playbook: { sha256: meta.playbookSha256 },
    build: {
      startedAt: meta.startedAt,
      finishedAt: input.finishedAt,
      phases: { preflight: meta.phasesMs.preflight, base: meta.phasesMs.base, provision: meta.phasesMs.provision, export: input.exportMs },
      provisionSteps: Object.fromEntries(Object.keys(steps).sort(compareBytes).map((key) => [key, steps[key] ?? 0])),
      accelerator: meta.accelerator,
      hostArch: meta.hostArch,
    },
    kubernetes: {
      installed: inventory.kubernetes.installed,
      version: inventory.kubernetes.version,
      skippedReason: inventory.kubernetes.skippedReason,
    },
    guest: {
      os: { id: inventory.os.id, versionId: inventory.os.versionId, prettyName: inventory.os.prettyName },
      packages: inventory.packages.length,
      binaries: inventory.binaries.length,
      images: inventory.images.length,
    },
    artifacts: [...input.artifacts]
      .sort((a, b) => compareBytes(a.file, b.file))
      .map((artifact) => ({
        file: artifact.file,
        kind: artifact.kind,
        sizeBytes: artifact.sizeBytes,
        sha256: artifact.sha256,
        ...(artifact.format === undefined ? {} : { format: artifact.format }),
        ...(artifact.virtualSizeBytes === undefined ? {} : { virtualSizeBytes: artifact.virtualSizeBytes }),
      })),
  };
}

/** Two-space indented JSON with a final newline: readable in review, stable byte for byte. */
export function renderJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
