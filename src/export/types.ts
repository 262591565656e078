import type { BuildFacts } from '../core/build-facts.js';
import type { GuestInventory } from '../core/inventory.js';

/** The guest inventory is defined (and parsed) in src/core/inventory.ts; export only reads it. */
export type { GuestInventory };

/**
 * What the export writes about the build: the build's facts (src/core/build-facts.ts: they go
 * into manifest.json, the SBOM and the containerDisk labels) and what the build measured.
 */
export interface ExportMeta {
  facts: BuildFacts;
  /** RFC 3339 UTC: when the build started (the image's build date is `facts.build.date`). */
  startedAt: string;
  /** Durations of the phases before export. */
  phasesMs: { preflight: number; base: number; provision: number };
  provisionStepsMs?: Readonly<Record<string, number>>;
}
