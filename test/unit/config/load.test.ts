import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_IMAGE_YAML } from '../../../src/config/default-image.js';
import { describeSpec } from '../../../src/config/describe.js';
import { kibPackageRoot, loadBuildSpec, parseBuildSpec } from '../../../src/config/load.js';
import { ConfigError } from '../../../src/core/errors.js';

const REPO_ROOT = resolve(import.meta.dirname, '../../..');
const MINIMAL = 'name: local\nbase:\n  url: ./base.qcow2\nkubernetes:\n  version: 1.36.1\n';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kib-config-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the embedded default', () => {
  it('is the same text as the repository image.yaml', async () => {
    expect(DEFAULT_IMAGE_YAML).toBe(await readFile(join(REPO_ROOT, 'image.yaml'), 'utf8'));
  });

  it('is used when there is no image.yaml in the working directory', async () => {
    const spec = await loadBuildSpec({ cwd: dir });
    expect(spec.configPath).toBeUndefined();
    expect(spec.name).toBe('rocky-9');
    expect(spec.base.osFamily).toBe('redhat');
    // The playbook ships with kib; the output belongs where the user is.
    expect(spec.provision.playbookPath).toBe(join(REPO_ROOT, 'playbook/site.yml'));
    expect(spec.outputs.dir).toBe(join(dir, 'output'));
    expect(kibPackageRoot()).toBe(REPO_ROOT);
  });

  it('resolves to the same spec as the repository image.yaml, apart from where it came from', async () => {
    const fromDefault = parseBuildSpec(DEFAULT_IMAGE_YAML, { configPath: undefined, cwd: REPO_ROOT });
    const fromFile = await loadBuildSpec({ configPath: 'image.yaml', cwd: REPO_ROOT });
    expect(fromFile.configPath).toBe(join(REPO_ROOT, 'image.yaml'));
    expect({ ...fromDefault, configPath: fromFile.configPath }).toEqual(fromFile);
  });

  it('pins a specific base build, its sha256 and an exact Kubernetes release', () => {
    const spec = parseBuildSpec(DEFAULT_IMAGE_YAML, { configPath: undefined, cwd: dir });
    expect(spec.base.url).not.toMatch(/latest/i);
    expect(spec.base.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(spec.kubernetes.version).toMatch(/^\d+\.\d+\.\d+$/);
    expect(spec.outputs.formats).toEqual(['qcow2', 'containerdisk']);
  });
});

describe('finding the file', () => {
  it('uses ./image.yaml from the working directory when no path is given', async () => {
    await writeFile(join(dir, 'image.yaml'), MINIMAL);
    const spec = await loadBuildSpec({ cwd: dir });
    expect(spec.configPath).toBe(join(dir, 'image.yaml'));
    expect(spec.base.url).toBe(join(dir, 'base.qcow2'));
  });

  it('resolves the given path against the working directory and paths inside it against its own directory', async () => {
    await mkdir(join(dir, 'defs'));
    await writeFile(join(dir, 'defs', 'node.yaml'), MINIMAL);
    const spec = await loadBuildSpec({ configPath: 'defs/node.yaml', cwd: dir, overrides: { outputDir: 'artifacts' } });
    expect(spec.configPath).toBe(join(dir, 'defs', 'node.yaml'));
    expect(spec.base.url).toBe(join(dir, 'defs', 'base.qcow2'));
    expect(spec.provision.playbookPath).toBe(join(dir, 'defs', 'playbook', 'site.yml'));
    expect(spec.outputs.dir).toBe(join(dir, 'artifacts'));
  });

  it('reports a missing file as a ConfigError naming it', async () => {
    const error = await loadBuildSpec({ configPath: 'nope.yaml', cwd: dir }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).issues[0]?.message).toBe(`cannot read ${join(dir, 'nope.yaml')}: no such file`);
  });
});

describe('describeSpec', () => {
  it('shows the resolved values with sizes and durations as people write them', () => {
    const described = describeSpec(parseBuildSpec(DEFAULT_IMAGE_YAML, { configPath: undefined, cwd: dir }));
    expect(described).toMatchObject({
      config: '(embedded default)',
      name: 'rocky-9',
      base: { verification: 'pinned sha256' },
      disk: { size: '20 GiB', sizeBytes: 20 * 1024 ** 3 },
      vm: { memory: '2 GiB', memoryMiB: 2048, bootTimeout: '10m', bootTimeoutMs: 600_000 },
      outputs: { formats: ['qcow2', 'containerdisk'] },
    });
    // Plain data: it survives a JSON round trip unchanged.
    expect(JSON.parse(JSON.stringify(described))).toEqual(described);
  });
});
