import { describe, expect, it } from 'vitest';
import { bootDecision, initialStatus, installId, SUCCESS_ORDER, transition, type MachineEvent, type MachineStatus } from '../../../src/netboot/lifecycle.js';
import { parseMachine, type Machine } from '../../../src/netboot/machines.js';

const machine = (spec: Record<string, unknown> = {}): Machine =>
  parseMachine({ apiVersion: 'netboot.kib.dev/v1alpha1', kind: 'Machine', metadata: { name: 'm1' }, spec: { macAddress: '52:54:00:00:00:01', ipAddress: '10.0.0.2', ...spec } }, 'test');

const at = (second: number): Date => new Date(Date.UTC(2026, 0, 1, 0, 0, second));

function play(events: MachineEvent[], start: MachineStatus = initialStatus(at(0))): MachineStatus {
  return events.reduce((status, event, index) => transition(status, event, at(index + 1)).status, start);
}

const INSTALL: MachineEvent[] = [
  { type: 'stage2-offered' },
  { type: 'writing', disk: '/dev/vda' },
  { type: 'progress', bytesWritten: 1024 },
  { type: 'written', imageSha256: 'a'.repeat(64) },
  { type: 'booted' },
  { type: 'joined' },
];

describe('the Machine state machine', () => {
  it('goes pending → booting → writing → written → booted → joined with a timestamp per phase, in order', () => {
    const status = play(INSTALL);
    expect(status.phase).toBe('joined');
    expect(Object.keys(status.phaseTimes).sort()).toEqual([...SUCCESS_ORDER].sort());
    const times = SUCCESS_ORDER.map((phase) => Date.parse(status.phaseTimes[phase]!));
    expect([...times].sort((a, b) => a - b)).toEqual(times);
    expect(status.imageSha256).toBe('a'.repeat(64));
    expect(status.disk).toBe('/dev/vda');
  });

  it('records progress only while writing, and drops it when the write ends', () => {
    const writing = play(INSTALL.slice(0, 3));
    expect(writing).toMatchObject({ phase: 'writing', bytesWritten: 1024 });
    expect(play(INSTALL.slice(0, 4)).bytesWritten).toBeUndefined();
    expect(transition(initialStatus(at(0)), { type: 'progress', bytesWritten: 5 }, at(1)).applied).toBe(false);
  });

  it('fails with a reason from any phase before joined, and a late report does not move a failed Machine', () => {
    const failed = play([...INSTALL.slice(0, 2), { type: 'failed', reason: 'sha256 mismatch' }]);
    expect(failed).toMatchObject({ phase: 'failed', reason: 'sha256 mismatch' });
    expect(failed.phaseTimes.failed).toBeDefined();
    expect(transition(failed, { type: 'written', imageSha256: 'b'.repeat(64) }, at(9))).toEqual({ status: failed, applied: false });
    expect(transition(play(INSTALL), { type: 'failed', reason: 'x' }, at(9)).applied).toBe(false);
  });

  it('ignores reports that skip phases (written without writing, joined before written)', () => {
    expect(transition(initialStatus(at(0)), { type: 'written', imageSha256: 'a'.repeat(64) }, at(1)).applied).toBe(false);
    expect(transition(play(INSTALL.slice(0, 2)), { type: 'joined' }, at(5)).applied).toBe(false);
  });

  it('a new offer of stage2 starts a fresh install: later phase times and the failure are dropped, the install id changes', () => {
    const failed = play([...INSTALL.slice(0, 2), { type: 'failed', reason: 'boom' }]);
    const retry = transition(failed, { type: 'stage2-offered' }, at(30)).status;
    expect(retry.phase).toBe('booting');
    expect(retry.reason).toBeUndefined();
    expect(Object.keys(retry.phaseTimes).sort()).toEqual(['booting', 'pending']);
    expect(installId(retry)).not.toBe(installId(failed));
  });
});

describe('bootDecision (the re-netboot guard)', () => {
  it('offers stage2 until the image is written, then never again', () => {
    expect(bootDecision(machine(), initialStatus(at(0))).kind).toBe('stage2');
    expect(bootDecision(machine(), play(INSTALL.slice(0, 2))).kind).toBe('stage2');
    for (const count of [4, 5, 6]) {
      const decision = bootDecision(machine(), play(INSTALL.slice(0, count)));
      expect(decision.kind).toBe('local');
    }
  });

  it('offers stage2 to an installed Machine once per new spec.reinstall value', () => {
    const installed = play(INSTALL);
    const first = bootDecision(machine({ reinstall: '2026-01-02' }), installed);
    expect(first).toEqual({ kind: 'stage2', reinstall: '2026-01-02' });
    const reinstalled = play(INSTALL.slice(1), transition(installed, { type: 'stage2-offered', reinstall: '2026-01-02' }, at(40)).status);
    expect(reinstalled.reinstallHandled).toBe('2026-01-02');
    expect(bootDecision(machine({ reinstall: '2026-01-02' }), reinstalled).kind).toBe('local');
    expect(bootDecision(machine({ reinstall: '2026-02-01' }), reinstalled).kind).toBe('stage2');
  });

  it('a reinstall value present at the first install is handled by it', () => {
    const m = machine({ reinstall: 'r1' });
    const decision = bootDecision(m, initialStatus(at(0)));
    expect(decision).toEqual({ kind: 'stage2', reinstall: 'r1' });
    const installed = play(INSTALL.slice(1), transition(initialStatus(at(0)), { type: 'stage2-offered', reinstall: 'r1' }, at(1)).status);
    expect(bootDecision(m, installed).kind).toBe('local');
  });
});
