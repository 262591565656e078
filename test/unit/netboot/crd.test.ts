import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { MACHINE_GROUP, MACHINE_KIND, MACHINE_PLURAL, MACHINE_VERSION, parseMachine } from '../../../src/netboot/machines.js';

const REPO = join(import.meta.dirname, '..', '..', '..');

describe('deploy/crd-machine.yaml', () => {
  it('names the group, version and kind kib uses, and its schema agrees with the offline one on good and bad Machines', async () => {
    const crd = parse(await readFile(join(REPO, 'deploy', 'crd-machine.yaml'), 'utf8')) as {
      metadata: { name: string };
      spec: { group: string; names: { kind: string; plural: string }; versions: { name: string; schema: { openAPIV3Schema: Record<string, unknown> } }[] };
    };
    expect(crd.metadata.name).toBe(`${MACHINE_PLURAL}.${MACHINE_GROUP}`);
    expect(crd.spec.group).toBe(MACHINE_GROUP);
    expect(crd.spec.names.kind).toBe(MACHINE_KIND);
    const version = crd.spec.versions.find((v) => v.name === MACHINE_VERSION);
    expect(version).toBeDefined();
    const ajv = new Ajv({ strict: false, allErrors: true });
    (addFormats as unknown as (ajv: Ajv) => void)(ajv);
    const validate = ajv.compile(version!.schema.openAPIV3Schema);
    const good = { apiVersion: 'netboot.kib.dev/v1alpha1', kind: 'Machine', metadata: { name: 'n1' }, spec: { macAddress: '52:54:00:00:00:01', ipAddress: '10.0.0.1', role: 'worker', disk: { minSizeBytes: 10 }, allowWipe: true, reinstall: 'r1', cloudConfig: { runcmd: ['x'] } } };
    expect(validate(good)).toBe(true);
    expect(() => parseMachine(good, 'good')).not.toThrow();
    for (const spec of [{ macAddress: 'nope', ipAddress: '10.0.0.1' }, { macAddress: '52:54:00:00:00:01', ipAddress: '10.0.0.1', role: 'boss' }, { macAddress: '52:54:00:00:00:01', ipAddress: '10.0.0.1', disk: { path: '/etc/x' } }, { macAddress: '52:54:00:00:00:01', ipAddress: '10.0.0.1', extra: 1 }]) {
      const bad = { ...good, spec };
      expect(validate(bad), JSON.stringify(spec)).toBe(false);
      expect(() => parseMachine(bad, 'bad')).toThrow();
    }
  });
});
