import { createHash } from 'node:crypto';
import type { Machine } from './machines.js';

/**
 * The per-Machine state machine, pure: `pending → booting → writing → written → booted → joined`,
 * or `failed` with a reason. The status it produces is what `status` holds on the Kubernetes
 * resource and in the offline state file; every phase entered gets a timestamp.
 *
 * The guard against re-netboot loops (machines that network-boot again after an install and
 * reimage themselves) is `bootDecision`: a Machine that is `written` or later is never offered
 * stage2 again unless its `spec.reinstall` carries a value not handled yet.
 */

export const PHASES = ['pending', 'booting', 'writing', 'written', 'booted', 'joined', 'failed'] as const;
export type Phase = (typeof PHASES)[number];

export interface MachineStatus {
  phase: Phase;
  /** ISO time each phase was last entered. */
  phaseTimes: Partial<Record<Phase, string>>;
  /** Why the Machine failed (only in `failed`). */
  reason?: string;
  /** Bytes written so far, while `writing`. */
  bytesWritten?: number;
  /** What stage2 reported about the disk it chose. */
  disk?: string;
  /** The `spec.reinstall` value this install answered, so it is not repeated. */
  reinstallHandled?: string;
  /** sha256 of the raw image last written and verified. */
  imageSha256?: string;
  /** How long stage2 took to stream the image onto the disk, and to read it back. */
  writeSeconds?: number;
  verifySeconds?: number;
  /**
   * The disk's raw streaming speed, measured by stage2 before it wrote the image, when the service
   * asked for it (`--measure-disk`): `bytes` of zeros written with O_DIRECT and read back.
   */
  diskSpeed?: DiskSpeed;
}

export interface DiskSpeed {
  bytes: number;
  writeSeconds: number;
  readSeconds: number;
}

export type MachineEvent =
  /** iPXE asked for its script and was given stage2. */
  | { type: 'stage2-offered'; reinstall?: string }
  /** stage2 runs, fetched its instructions, and starts writing to `disk`. */
  | { type: 'writing'; disk: string; diskSpeed?: DiskSpeed }
  | { type: 'progress'; bytesWritten: number }
  /** stage2 read the image back and its sha256 matched. */
  | { type: 'written'; imageSha256: string; writeSeconds?: number; verifySeconds?: number }
  /** The installed system's first boot reached its cloud-config's final stage. */
  | { type: 'booted' }
  | { type: 'joined' }
  | { type: 'failed'; reason: string };

/** Names one install (changes when stage2 is offered again): seeds and tokens are per install. */
export function installId(status: MachineStatus): string {
  return createHash('sha256').update(status.phaseTimes.booting ?? 'none').digest('hex').slice(0, 10);
}

export function initialStatus(now: Date): MachineStatus {
  return { phase: 'pending', phaseTimes: { pending: now.toISOString() } };
}

/** Which phases an event may arrive in; anything else is ignored (a late or repeated report). */
const ALLOWED_FROM: Record<MachineEvent['type'], readonly Phase[]> = {
  'stage2-offered': ['pending', 'booting', 'writing', 'failed', 'written', 'booted', 'joined'],
  writing: ['booting', 'writing'],
  progress: ['writing'],
  written: ['writing'],
  booted: ['written', 'booted'],
  joined: ['booted', 'written'],
  failed: ['pending', 'booting', 'writing', 'written', 'booted'],
};

export interface Transition {
  status: MachineStatus;
  /** False when the event did not apply in the current phase (the status is unchanged). */
  applied: boolean;
}

export function transition(status: MachineStatus, event: MachineEvent, now: Date): Transition {
  if (!ALLOWED_FROM[event.type].includes(status.phase)) return { status, applied: false };
  const enter = (phase: Phase, extra: Partial<MachineStatus> = {}): MachineStatus => {
    const { reason: _reason, bytesWritten: _bytes, ...kept } = status;
    return { ...kept, ...extra, phase, phaseTimes: { ...status.phaseTimes, [phase]: now.toISOString() } };
  };
  switch (event.type) {
    case 'stage2-offered': {
      // A new install: later phases' times belong to the previous one.
      const { phaseTimes } = status;
      // (a reinstall also drops the previous install's figures)
      const fresh: MachineStatus = {
        phase: 'booting',
        phaseTimes: { ...(phaseTimes.pending === undefined ? {} : { pending: phaseTimes.pending }), booting: now.toISOString() },
      };
      const reinstall = event.reinstall ?? status.reinstallHandled;
      return { status: reinstall === undefined ? fresh : { ...fresh, reinstallHandled: reinstall }, applied: true };
    }
    case 'writing':
      if (status.phase === 'writing') return { status: { ...status, disk: event.disk }, applied: true };
      return { status: enter('writing', { disk: event.disk, bytesWritten: 0, ...(event.diskSpeed === undefined ? {} : { diskSpeed: event.diskSpeed }) }), applied: true };
    case 'progress':
      return { status: { ...status, bytesWritten: event.bytesWritten }, applied: true };
    case 'written':
      return {
        status: enter('written', {
          imageSha256: event.imageSha256,
          ...(event.writeSeconds === undefined ? {} : { writeSeconds: event.writeSeconds }),
          ...(event.verifySeconds === undefined ? {} : { verifySeconds: event.verifySeconds }),
        }),
        applied: true,
      };
    case 'booted':
      if (status.phase === 'booted') return { status, applied: false };
      return { status: enter('booted'), applied: true };
    case 'joined':
      return { status: enter('joined'), applied: true };
    case 'failed':
      return { status: enter('failed', { reason: event.reason }), applied: true };
  }
}

export type BootDecision =
  /** Load stage2 and install. */
  | { kind: 'stage2'; reinstall?: string }
  /** Leave the network boot; the firmware goes on to the disk. */
  | { kind: 'local'; why: string };

const INSTALLED: readonly Phase[] = ['written', 'booted', 'joined'];

/**
 * What a Machine's iPXE script does. Installed Machines boot from their disk unless a new
 * reinstall value is asked for. A failed Machine gets stage2 again (its disk was blanked, so there
 * is nothing to boot) — the failure stays in the status until the new attempt reports.
 */
export function bootDecision(machine: Machine, status: MachineStatus): BootDecision {
  const reinstall = machine.spec.reinstall;
  if (INSTALLED.includes(status.phase)) {
    if (reinstall !== undefined && reinstall !== status.reinstallHandled) return { kind: 'stage2', reinstall };
    return { kind: 'local', why: `${machine.metadata.name} is ${status.phase}; set spec.reinstall to a new value to reinstall` };
  }
  return reinstall === undefined ? { kind: 'stage2' } : { kind: 'stage2', reinstall };
}

/** Phases in the order they are entered on a successful install. */
export const SUCCESS_ORDER: readonly Phase[] = ['pending', 'booting', 'writing', 'written', 'booted', 'joined'];
