import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkMachineSet, loadMachineDir, normalizeMac, parseMachine } from '../../../src/netboot/machines.js';

const base = { apiVersion: 'netboot.kib.dev/v1alpha1', kind: 'Machine', metadata: { name: 'node-1' }, spec: { macAddress: '52:54:00:AA:BB:01', ipAddress: '10.0.0.11' } };

describe('Machine resources', () => {
  it('validates and fills defaults; MACs are lower-cased', () => {
    const machine = parseMachine(base, 'm');
    expect(machine.spec).toEqual({ macAddress: '52:54:00:aa:bb:01', ipAddress: '10.0.0.11', role: 'worker', disk: {}, allowWipe: false });
  });

  it('reports every problem at once, with its path', () => {
    expect(() => parseMachine({ ...base, metadata: { name: 'Node_1' }, spec: { macAddress: 'zz', ipAddress: '10.0.0.300', role: 'boss', extra: 1 } }, 'bad.yaml')).toThrow(
      /bad\.yaml is not a valid Machine:[\s\S]*metadata\.name[\s\S]*spec\.macAddress[\s\S]*spec\.ipAddress[\s\S]*spec\.role[\s\S]*extra/,
    );
  });

  it('rejects a disk path outside /dev and a wrong apiVersion', () => {
    expect(() => parseMachine({ ...base, spec: { ...base.spec, disk: { path: '/etc/passwd' } } }, 'x')).toThrow(/spec\.disk\.path/);
    expect(() => parseMachine({ ...base, apiVersion: 'v1' }, 'x')).toThrow(/apiVersion/);
  });

  it('refuses two Machines with one MAC, address or name', () => {
    const a = parseMachine(base, 'a');
    const b = parseMachine({ ...base, metadata: { name: 'node-2' }, spec: { ...base.spec, ipAddress: '10.0.0.12' } }, 'b');
    expect(() => checkMachineSet([a, b])).toThrow(/node-2 and node-1 share macAddress 52:54:00:aa:bb:01/);
  });

  it('reads a directory of YAML files with several documents each, sorted by file name', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kib-machines-'));
    try {
      const doc = (name: string, n: number): string =>
        `apiVersion: netboot.kib.dev/v1alpha1\nkind: Machine\nmetadata:\n  name: ${name}\nspec:\n  macAddress: "52:54:00:00:00:0${n}"\n  ipAddress: 10.0.0.${n}\n  role: control-plane\n  disk: { minSizeBytes: 1000000000 }\n`;
      await writeFile(join(dir, 'b.yaml'), `${doc('b1', 3)}---\n${doc('b2', 4)}`);
      await writeFile(join(dir, 'a.yml'), doc('a1', 1));
      await writeFile(join(dir, 'notes.txt'), 'ignored');
      const machines = await loadMachineDir(dir);
      expect(machines.map((m) => m.metadata.name)).toEqual(['a1', 'b1', 'b2']);
      expect(machines[0]?.spec.disk.minSizeBytes).toBe(1_000_000_000);
      await writeFile(join(dir, 'c.yaml'), 'apiVersion: netboot.kib.dev/v1alpha1\nkind: Machine\nmetadata: {name: c}\nspec: {}\n');
      await expect(loadMachineDir(dir)).rejects.toThrow(/c\.yaml is not a valid Machine/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('normalizes the MAC forms iPXE sends', () => {
    expect(normalizeMac('52-54-00-AA-BB-01')).toBe('52:54:00:aa:bb:01');
    expect(normalizeMac('52:54:00:aa:bb')).toBeUndefined();
  });
});
