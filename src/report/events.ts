/**
 * The library never prints: it emits these events to a Reporter, and the CLI decides how they look
 * (human on a TTY, json-lines for CI, silent, or recorded in tests).
 */
export type Phase = 'preflight' | 'base' | 'lock' | 'provision' | 'export' | 'verify' | 'push' | 'serve';

export type KibEvent =
  | { type: 'phase-start'; phase: Phase; title: string }
  | { type: 'phase-end'; phase: Phase; durationMs: number; ok: boolean }
  | { type: 'step'; phase: Phase; message: string }
  | { type: 'progress'; phase: Phase; label: string; done: number; total: number | undefined; unit: 'bytes' | 'tasks' | 'items' }
  | { type: 'log'; source: string; line: string; level?: 'debug' | 'info' | 'warn' }
  | { type: 'warning'; message: string }
  | { type: 'artifact'; path: string; kind: string; sha256: string; sizeBytes: number }
  | { type: 'check'; name: string; status: 'pass' | 'fail' | 'skip'; detail: string }
  /** A provisioning stage begins: `hit` when its layer comes from the store and the stage does not run. */
  | { type: 'stage-start'; stage: string; key: string; hit: boolean }
  /** A provisioning stage is done: `layer` is the key of the layer it left in the store (null: none, the final stage). */
  | { type: 'stage-end'; stage: string; durationMs: number; layer: string | null };

export interface Reporter {
  emit(event: KibEvent): void;
}

/** A reporter that drops everything. */
export const silentReporter: Reporter = { emit() {} };
