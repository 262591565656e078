import type { LayerStore } from '../layers/index.js';
import type { KeyDocument, PlannedKey } from './plan.js';

export interface KeyChange {
  /** Dotted path in the key document, e.g. `vars.kib_kubernetes_version`. */
  field: string;
  before: unknown;
  after: unknown;
}

export interface StageExplanation {
  step: string;
  stage: string;
  key: string;
  status: 'hit' | 'miss';
  /** On a miss: the stage's most recent stored key, whose key.json was compared. */
  comparedWith?: string;
  /** On a miss: what differs from that entry (empty when there is none to compare with). */
  changes: KeyChange[];
  reason: string;
}

/**
 * For each provisioning stage: is its layer in the store, and if not, which inputs differ from the
 * stage's most recently stored layer (its key.json against the key document computed now).
 */
export async function explainStages(keys: readonly PlannedKey[], store: LayerStore): Promise<StageExplanation[]> {
  const out: StageExplanation[] = [];
  for (const planned of keys) {
    if (!planned.step.startsWith('provision.') || planned.step === 'provision.disk') continue;
    const stage = planned.step.slice('provision.'.length);
    if (await store.has(planned.key)) {
      out.push({ step: planned.step, stage, key: planned.key, status: 'hit', changes: [], reason: 'layer stored' });
      continue;
    }
    const latest = await store.latestKey(stage);
    const stored = latest === undefined ? undefined : await store.readKeyDocument(latest);
    if (latest === undefined || stored === undefined) {
      out.push({ step: planned.step, stage, key: planned.key, status: 'miss', changes: [], reason: 'no layer of this stage is stored' });
      continue;
    }
    const changes = diffKeyDocuments(stored, planned.document);
    const own = changes.filter((c) => c.field !== 'previous');
    const reason =
      own.length > 0
        ? `changed since the stored layer: ${own.map((c) => c.field).join(', ')}${own.length < changes.length ? ' (and an earlier stage)' : ''}`
        : changes.length > 0
          ? 'an earlier stage changed (previous key); this stage\'s own inputs did not'
          : 'the stored layer has the same inputs but a different key (stored by another kib version?)';
    out.push({ step: planned.step, stage, key: planned.key, status: 'miss', comparedWith: latest, changes, reason });
  }
  return out;
}

/** The leaf fields that differ between two key documents (arrays compare whole). */
export function diffKeyDocuments(before: unknown, after: KeyDocument | unknown): KeyChange[] {
  const a = flatten(before);
  const b = flatten(after);
  const fields = [...new Set([...a.keys(), ...b.keys()])].sort();
  const changes: KeyChange[] = [];
  for (const field of fields) {
    const x = a.get(field);
    const y = b.get(field);
    if (JSON.stringify(x) !== JSON.stringify(y)) changes.push({ field, before: x, after: y });
  }
  return changes;
}

function flatten(value: unknown, prefix = '', out = new Map<string, unknown>()): Map<string, unknown> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.length === 0 && prefix !== '') out.set(prefix, {});
    for (const [k, v] of entries) flatten(v, prefix === '' ? k : `${prefix}.${k}`, out);
  } else if (prefix !== '') {
    out.set(prefix, value);
  }
  return out;
}

/** One line per change, values shortened: `vars.kib_kubernetes_version: "1.36.1" → "1.36.2"`. */
export function renderKeyChange(change: KeyChange): string {
  const show = (v: unknown): string => {
    if (v === undefined) return '(absent)';
    const text = JSON.stringify(v);
    return /^"[0-9a-f]{64}"$/.test(text) ? `${text.slice(1, 13)}…` : text.length > 60 ? `${text.slice(0, 57)}…` : text;
  };
  return `${change.field}: ${show(change.before)} → ${show(change.after)}`;
}
