import type { LayerStore } from '../layers/index.js';
import type { PlannedStage, ProvisionStart } from '../provision/provision.js';
import type { Reporter } from '../report/events.js';
import type { PlannedKey } from './plan.js';
import { PROVISION_STAGES } from './stage-inputs.js';

/** The provisioning stages of a plan, in order, with their keys and key documents. */
export function plannedStages(keys: readonly PlannedKey[]): PlannedStage[] {
  return PROVISION_STAGES.map((stage) => {
    const planned = keys.find((k) => k.step === `provision.${stage.name}`);
    if (planned === undefined) throw new Error(`the plan has no key for stage ${stage.name}`);
    return { name: stage.name, tags: stage.tags, key: planned.key, keyDocument: planned.document };
  });
}

export interface ResumePoint {
  start: ProvisionStart;
  /** Releases the lease on the layer chain the build boots from; call once the build is done with it. */
  release: () => Promise<void>;
}

/**
 * Where a build can start: the deepest stage (the last one excluded: the seal never comes from a
 * layer) whose layer is in the store and passes verification, which covers every layer under it.
 * A corrupt layer or a broken chain is a miss, said in a warning; the store has removed it, so the
 * stage runs again and stores a good one.
 */
export async function findResumePoint(layers: LayerStore, stages: readonly PlannedStage[], options: { signal: AbortSignal; reporter: Reporter }): Promise<ResumePoint> {
  for (let index = stages.length - 2; index >= 0; index -= 1) {
    const stage = stages[index] as PlannedStage;
    const lookup = await layers.get(stage.key, { signal: options.signal });
    if (lookup.status === 'hit') {
      return { start: { kind: 'layer', stage: stage.name, key: stage.key, path: lookup.entry.path }, release: lookup.release };
    }
    if (lookup.reason !== 'absent') options.reporter.emit({ type: 'warning', message: `layer of stage ${stage.name}: ${lookup.message}` });
  }
  return { start: { kind: 'base' }, release: async () => {} };
}
