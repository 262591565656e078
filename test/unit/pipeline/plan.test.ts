import { execFileSync } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBuildSpec, type BuildSpec } from '../../../src/config/index.js';
import type { BuildFacts } from '../../../src/core/build-facts.js';
import { KibError } from '../../../src/core/errors.js';
import { LayerStore } from '../../../src/layers/index.js';
import { diffKeyDocuments, explainStages } from '../../../src/pipeline/explain.js';
import { assembleBuildFacts, resolveBuildDate } from '../../../src/pipeline/facts.js';
import { describeGitVersion } from '../../../src/pipeline/git-version.js';
import { computeStageKeys, type PlannedKey } from '../../../src/pipeline/plan.js';
import { PROVISION_STAGES, readPlaybookStages, resolveStageVariables } from '../../../src/pipeline/stage-inputs.js';
import { run } from '../../../src/process/index.js';
import { REPO_ROOT } from '../../support/kib-cli.js';

const STEPS = ['base', 'provision.disk', ...PROVISION_STAGES.map((s) => `provision.${s.name}`), 'export'];

function factsFor(spec: BuildSpec, change: Partial<{ version: string; commit: string; buildDate: string; baseSha256: string }> = {}): BuildFacts {
  return assembleBuildFacts(spec, {
    version: { version: change.version ?? 'v1.0.0', commit: change.commit ?? '0123456789abcdef0123456789abcdef01234567', dirty: false },
    base: { url: 'https://example.org/base.qcow2', sha256: change.baseSha256 ?? 'e'.repeat(64) },
    playbookSha256: 'f'.repeat(64),
    toolVersion: '0.1.0',
    accelerator: 'tcg',
    hostArch: 'x64',
    buildDate: change.buildDate ?? '2026-01-01T00:00:00Z',
  });
}

async function keysOf(spec: BuildSpec, facts: BuildFacts = factsFor(spec)): Promise<Record<string, string>> {
  const keys = await computeStageKeys(spec, { facts, baseResolved: true });
  return Object.fromEntries(keys.map((k) => [k.step, k.key]));
}

describe('stage keys', () => {
  let spec: BuildSpec;
  let scratch: string;
  let playbookCopy: string;
  let baseline: Record<string, string>;

  beforeAll(async () => {
    spec = await loadBuildSpec({ cwd: REPO_ROOT });
    baseline = await keysOf(spec);
    scratch = await mkdtemp(join(tmpdir(), 'kib-plan-'));
    playbookCopy = join(scratch, 'playbook');
    await cp(join(REPO_ROOT, 'playbook'), playbookCopy, { recursive: true });
  });
  afterAll(() => rm(scratch, { recursive: true, force: true }));

  it('are 64-hex keys for every step, and the same inputs give the same keys', async () => {
    expect(Object.keys(baseline)).toEqual(STEPS);
    for (const key of Object.values(baseline)) expect(key).toMatch(/^[0-9a-f]{64}$/);
    expect(await keysOf(spec)).toEqual(baseline);
  });

  /** Edits a copy of the playbook, computes keys on it, and undoes the edit. */
  const withPlaybookEdit = async (file: string, edit: (text: string) => string): Promise<Record<string, string>> => {
    const path = join(playbookCopy, file);
    const original = await readFile(path, 'utf8');
    const copySpec = { ...spec, provision: { ...spec.provision, playbookPath: join(playbookCopy, 'site.yml') } };
    const before = await keysOf(copySpec);
    await writeFile(path, edit(original));
    try {
      const after = await keysOf(copySpec);
      // Keys of the copy before the edit equal the original's: paths do not enter the keys.
      expect(before).toEqual(baseline);
      return after;
    } finally {
      await writeFile(path, original);
    }
  };

  // Each input, and the first step whose key it must change. The chain then changes every later
  // step; every earlier step must keep its key.
  const cases: { input: string; firstChanged: string; keys: () => Promise<Record<string, string>> }[] = [
    { input: 'base sha256', firstChanged: 'base', keys: () => keysOf(spec, factsFor(spec, { baseSha256: 'd'.repeat(64) })) },
    { input: 'disk size', firstChanged: 'provision.disk', keys: () => keysOf({ ...spec, disk: { sizeBytes: spec.disk.sizeBytes * 2 } }) },
    { input: 'node.selinux', firstChanged: 'provision.os', keys: () => keysOf({ ...spec, node: { ...spec.node, selinux: 'enforcing' } }) },
    { input: 'node.firewall', firstChanged: 'provision.os', keys: () => keysOf({ ...spec, node: { ...spec.node, firewall: false } }) },
    { input: 'kubernetes.version', firstChanged: 'provision.runtime', keys: () => keysOf({ ...spec, kubernetes: { ...spec.kubernetes, version: '1.36.2' } }) },
    { input: 'kubernetes.packages', firstChanged: 'provision.runtime', keys: () => keysOf({ ...spec, kubernetes: { ...spec.kubernetes, packages: 'skip' } }) },
    { input: 'name', firstChanged: 'provision.finalize', keys: () => keysOf({ ...spec, name: 'renamed' }) },
    { input: 'image version (Git)', firstChanged: 'provision.finalize', keys: () => keysOf(spec, factsFor(spec, { version: 'v2.0.0' })) },
    { input: 'Git commit', firstChanged: 'provision.finalize', keys: () => keysOf(spec, factsFor(spec, { commit: 'f'.repeat(40) })) },
    { input: 'build date', firstChanged: 'provision.finalize', keys: () => keysOf(spec, factsFor(spec, { buildDate: '2027-01-01T00:00:00Z' })) },
    { input: 'output formats', firstChanged: 'export', keys: () => keysOf({ ...spec, outputs: { ...spec.outputs, formats: ['qcow2'] } }) },
    { input: 'a provision.vars entry no role reads', firstChanged: 'provision.os', keys: () => keysOf({ ...spec, provision: { ...spec.provision, vars: { ansible_python_interpreter: '/usr/bin/python3.11' } } }) },
    { input: 'a provision.vars entry only the images role reads', firstChanged: 'provision.images', keys: () => keysOf({ ...spec, provision: { ...spec.provision, vars: { images_pull_timeout: 60 } } }) },
    { input: 'a file of the os stage (roles/kernel)', firstChanged: 'provision.os', keys: () => withPlaybookEdit('roles/kernel/defaults/main.yml', (t) => `${t}\n# edited\n`) },
    { input: "the containerd role's file", firstChanged: 'provision.runtime', keys: () => withPlaybookEdit('roles/containerd/templates/config.toml.j2', (t) => `${t}\n# edited\n`) },
    { input: 'a file of the images role', firstChanged: 'provision.images', keys: () => withPlaybookEdit('roles/images/defaults/main.yml', (t) => `${t}\n# edited\n`) },
    { input: 'a file of the release role', firstChanged: 'provision.finalize', keys: () => withPlaybookEdit('roles/release/templates/kube-image-release.j2', (t) => `${t}\n# edited\n`) },
    { input: 'preflight (runs in every stage)', firstChanged: 'provision.os', keys: () => withPlaybookEdit('roles/preflight/defaults/main.yml', (t) => `${t}\n# edited\n`) },
    { input: 'group_vars', firstChanged: 'provision.os', keys: () => withPlaybookEdit('group_vars/all.yml', (t) => `${t}\n# edited\n`) },
    { input: "the when: of the images role in site.yml", firstChanged: 'provision.images', keys: () => withPlaybookEdit('site.yml', (t) => t.replace(/(role: images\n\s+tags: \[images\]\n\s+when: )kib_k8s_source_available \| bool/, '$1true')) },
    { input: 'a comment in site.yml', firstChanged: '(none)', keys: () => withPlaybookEdit('site.yml', (t) => `${t}\n# only a comment\n`) },
  ];

  it.each(cases)('$input changes the key of $firstChanged and every later step, none before', async ({ firstChanged, keys }) => {
    const changed = await keys();
    const first = firstChanged === '(none)' ? STEPS.length : STEPS.indexOf(firstChanged);
    expect(first).toBeGreaterThanOrEqual(0);
    STEPS.forEach((step, index) => {
      if (index < first) expect(changed[step], `${step} should keep its key`).toBe(baseline[step]);
      else expect(changed[step], `${step} should change`).not.toBe(baseline[step]);
    });
  });

  it('declares what the keys do not cover, and puts the cloud-config first and the seal script last', async () => {
    const keys = await computeStageKeys({ ...spec, kubernetes: { ...spec.kubernetes, packages: 'auto' } }, { facts: factsFor({ ...spec, kubernetes: { ...spec.kubernetes, packages: 'auto' } }), baseResolved: true });
    const doc = (step: string): Record<string, any> => keys.find((k) => k.step === step)?.document as Record<string, any>;
    expect(Object.keys(doc('provision.os').engine)).toEqual(['ansibleConfig', 'cloudConfig']);
    expect(Object.keys(doc('provision.finalize').engine)).toEqual(['ansibleConfig', 'sealScript']);
    expect(doc('provision.os').declared.kubernetesPackageSource).toBeUndefined();
    expect(doc('provision.kubernetes').declared.kubernetesPackageSource).toContain('not keyed');
    expect(doc('provision.finalize').declared.buildDate).toContain('SOURCE_DATE_EPOCH');
    expect(doc('provision.kubernetes').playbook).toHaveProperty(['roles/containerd/tasks/config.yml']);
    expect(doc('provision.os').vars).not.toHaveProperty('kib_kubernetes_version');
  });
});

describe('the playbook read by stage', () => {
  it('every role site.yml lists is run by some stage', async () => {
    const stages = await readPlaybookStages(join(REPO_ROOT, 'playbook', 'site.yml'));
    expect(stages.mode).toBe('stages');
    expect(stages.unclaimedRoles).toEqual([]);
  });

  it('a role tagged with no stage is an error that names it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kib-plan-site-'));
    try {
      await writeFile(join(dir, 'site.yml'), '- hosts: all\n  roles:\n    - role: base\n      tags: [os]\n    - role: stray\n');
      const spec = await loadBuildSpec({ cwd: REPO_ROOT });
      const odd = { ...spec, provision: { ...spec.provision, playbookPath: join(dir, 'site.yml') } };
      const error = await computeStageKeys(odd, { facts: factsFor(odd), baseResolved: true }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(KibError);
      expect((error as KibError).code).toBe('PLAYBOOK_STAGE_UNCLAIMED');
      expect((error as KibError).message).toContain('stray');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("a role's include_role of another stage's role is declared in CROSS_STAGE_ROLE_READS", async () => {
    const stages = await readPlaybookStages(join(REPO_ROOT, 'playbook', 'site.yml'));
    for (const stage of stages.stages) {
      for (const file of Object.keys(stage.files).filter((f) => f.startsWith('roles/') && f.endsWith('.yml'))) {
        const text = await readFile(join(REPO_ROOT, 'playbook', file), 'utf8');
        for (const match of text.matchAll(/(?:include|import)_role:\s*\n\s*name:\s*(\S+)/g)) {
          const role = match[1] as string;
          // stage.roles holds the stage's own roles and the declared cross reads.
          expect(stage.roles, `${file} includes role ${role} in stage ${stage.stage}: declare it in CROSS_STAGE_ROLE_READS`).toContain(role);
        }
      }
    }
  });

  it('every kib_* name a stage reads is an engine variable or derived from one', async () => {
    const stages = await readPlaybookStages(join(REPO_ROOT, 'playbook', 'site.yml'));
    const spec = await loadBuildSpec({ cwd: REPO_ROOT });
    const { playbookVarsFromFacts } = await import('../../../src/core/build-facts.js');
    const inputs = new Set([...Object.keys(playbookVarsFromFacts(factsFor(spec))), 'kib_build_user']);
    for (const stage of stages.stages) expect(resolveStageVariables(stage.referencedKibNames, inputs).unknown, stage.stage).toEqual([]);
  });
});

describe('plan --explain', () => {
  it('says hit for a stored stage, and on a miss names the changed input with both values', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kib-explain-'));
    try {
      const spec = await loadBuildSpec({ cwd: REPO_ROOT });
      const store = new LayerStore(join(dir, 'layers'));
      const layer = join(dir, 'l.qcow2');
      await run('qemu-img', ['create', '-q', '-f', 'qcow2', layer, '16M']);
      const before = await computeStageKeys(spec, { facts: factsFor(spec), baseResolved: true });
      let previous: string | undefined;
      for (const planned of before.filter((k: PlannedKey) => k.step.startsWith('provision.') && k.step !== 'provision.disk')) {
        await store.put({ key: planned.key, stage: planned.step.slice(10), sourcePath: layer, keyDocument: planned.document, backing: previous === undefined ? { kind: 'none' } : { kind: 'layer', key: previous } });
        previous = planned.key;
      }
      expect((await explainStages(before, store)).map((s) => s.status)).toEqual(['hit', 'hit', 'hit', 'hit', 'hit']);

      const bumped = { ...spec, kubernetes: { ...spec.kubernetes, version: '1.36.9' } };
      const after = await computeStageKeys(bumped, { facts: factsFor(bumped), baseResolved: true });
      const explained = await explainStages(after, store);
      expect(explained.map((s) => [s.stage, s.status])).toEqual([['os', 'hit'], ['runtime', 'miss'], ['kubernetes', 'miss'], ['images', 'miss'], ['finalize', 'miss']]);
      const runtime = explained.find((s) => s.stage === 'runtime');
      expect(runtime?.changes).toContainEqual({ field: 'vars.kib_kubernetes_version', before: spec.kubernetes.version, after: '1.36.9' });
      expect(runtime?.reason).toContain('vars.kib_kubernetes_version');
      expect(diffKeyDocuments({ a: { b: 1 } }, { a: { b: 1, c: 2 } })).toEqual([{ field: 'a.c', before: undefined, after: 2 }]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('resolveBuildDate', () => {
  const start = new Date('2026-03-04T05:06:07.890Z');
  const cleanAt = (seconds: number) => ({ dirty: false, commitEpochSeconds: seconds });

  it('takes SOURCE_DATE_EPOCH when set, over everything else', () => {
    expect(resolveBuildDate(start, { SOURCE_DATE_EPOCH: '1700000000' }, cleanAt(1_600_000_000))).toEqual({ date: '2023-11-14T22:13:20Z', source: 'SOURCE_DATE_EPOCH' });
    expect(() => resolveBuildDate(start, { SOURCE_DATE_EPOCH: 'yesterday' })).toThrow(/SOURCE_DATE_EPOCH/);
  });

  it('takes the commit date of a clean build definition repository, so an unchanged rebuild keeps its date', () => {
    expect(resolveBuildDate(start, {}, cleanAt(1_600_000_000))).toEqual({ date: '2020-09-13T12:26:40Z', source: 'git-commit' });
    expect(resolveBuildDate(new Date(), {}, cleanAt(1_600_000_000)).date).toBe('2020-09-13T12:26:40Z');
  });

  it('takes the start time, in whole seconds, when the tree has local changes or there is no Git', () => {
    expect(resolveBuildDate(start, {}, { dirty: true, commitEpochSeconds: 1_600_000_000 })).toEqual({ date: '2026-03-04T05:06:07Z', source: 'now' });
    expect(resolveBuildDate(start, {}, { dirty: false })).toEqual({ date: '2026-03-04T05:06:07Z', source: 'now' });
    expect(resolveBuildDate(start, {})).toEqual({ date: '2026-03-04T05:06:07Z', source: 'now' });
  });

  it('describeGitVersion reads the commit date, and a tracked change makes the tree dirty (a real repository)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kib-git-date-'));
    try {
      const git = (...args: string[]) =>
        execFileSync('git', ['-C', dir, ...args], {
          env: { ...process.env, GIT_AUTHOR_DATE: '@1600000000 +0000', GIT_COMMITTER_DATE: '@1600000000 +0000', GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.org', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.org' },
        });
      git('init', '-q');
      await writeFile(join(dir, 'image.yaml'), 'name: a\n');
      git('add', 'image.yaml');
      git('commit', '-q', '-m', 'one');
      const clean = await describeGitVersion(dir);
      expect(clean).toMatchObject({ dirty: false, commitEpochSeconds: 1_600_000_000 });
      expect(resolveBuildDate(start, {}, clean)).toEqual({ date: '2020-09-13T12:26:40Z', source: 'git-commit' });
      await writeFile(join(dir, 'image.yaml'), 'name: b\n');
      const dirty = await describeGitVersion(dir);
      expect(dirty.dirty).toBe(true);
      expect(resolveBuildDate(start, {}, dirty).source).toBe('now');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
