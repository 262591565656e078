import { buildManifestSchema, manifestSectionsFromFacts, MANIFEST_SCHEMA_VERSION, type BuildManifest, type ManifestArtifact } from '../core/build-facts.js';
import { KibError } from '../core/errors.js';
import { compareBytes } from './hash.js';
import type { ExportMeta, GuestInventory } from './types.js';

export const MANIFEST_FILE = 'manifest.json';
export { MANIFEST_SCHEMA_VERSION };
export type { BuildManifest, ManifestArtifact };

export interface BuildManifestInput {
  meta: ExportMeta;
  inventory: GuestInventory;
  /** RFC 3339 UTC, when the export wrote the manifest. */
  finishedAt: string;
  exportMs: number;
  artifacts: readonly ManifestArtifact[];
}

/**
 * Builds the manifest object with its keys in one fixed order (the object literals below) and
 * artifacts sorted by file name, so equal inputs serialize to equal bytes. Durations are in ms.
 */
export function buildManifest(input: BuildManifestInput): BuildManifest {
  const { meta, inventory } = input;
  const steps = meta.provisionStepsMs ?? {};
  const manifest: BuildManifest = {
    schemaVersion: MANIFEST_SCHEMA_VERSION,
    ...manifestSectionsFromFacts(meta.facts),
    build: {
      date: meta.facts.build.date,
      startedAt: meta.startedAt,
      finishedAt: input.finishedAt,
      phases: { preflight: meta.phasesMs.preflight, base: meta.phasesMs.base, provision: meta.phasesMs.provision, export: input.exportMs },
      provisionSteps: Object.fromEntries(Object.keys(steps).sort(compareBytes).map((key) => [key, steps[key] ?? 0])),
      accelerator: meta.facts.build.accelerator,
      hostArch: meta.facts.build.hostArch,
    },
    kubernetes: {
      packages: meta.facts.kubernetes.packages,
      lockedPackages: meta.facts.kubernetes.lockedPackages,
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
  // What is written must read back through the schema every reader uses.
  const checked = buildManifestSchema.safeParse(manifest);
  if (!checked.success) {
    throw new KibError('EXPORT_INVALID', `the manifest does not match its own schema: ${checked.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return manifest;
}

/** Two-space indented JSON with a final newline: readable in review, stable byte for byte. */
export function renderJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
