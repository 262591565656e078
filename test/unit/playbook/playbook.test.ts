import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { findTool, run } from '../../../src/process/index.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const playbookDir = join(repoRoot, 'playbook');
const sitePath = join(playbookDir, 'site.yml');

const ansiblePlaybook = findTool('ansible-playbook');
const ansibleLint = findTool('ansible-lint');
const python3 = findTool('python3');
const dpkgQuery = findTool('dpkg-query');

/** The playbook's stage tags, in build order (docs/playbook.md); `kib plan` keys each one, no build caches them yet. */
const STAGES = ['os', 'runtime', 'kubernetes', 'images', 'finalize'] as const;
const GATED_ROLES = ['containerd', 'kubernetes', 'images'];

interface RoleEntry {
  role: string;
  tags: string[];
  when?: string;
}

async function siteRoles(): Promise<RoleEntry[]> {
  const plays = parse(await readFile(sitePath, 'utf8')) as { roles: RoleEntry[] }[];
  expect(plays).toHaveLength(1);
  return plays[0]?.roles ?? [];
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

describe('playbook/site.yml', () => {
  it.skipIf(ansiblePlaybook === undefined)(
    'passes ansible-playbook --syntax-check (skipped when ansible-core is not installed)',
    async () => {
      const result = await run(ansiblePlaybook ?? 'ansible-playbook', ['--syntax-check', '-i', 'localhost,', sitePath], {
        cwd: repoRoot,
        allowFailure: true,
        timeoutMs: 60_000,
      });
      expect(result.stderr).not.toMatch(/ERROR/);
      expect(result.exitCode).toBe(0);
    },
    90_000,
  );

  it.skipIf(ansibleLint === undefined)(
    'passes ansible-lint with the production profile, offline (skipped when the ansible-lint package is not installed)',
    async () => {
      const result = await run(ansibleLint ?? 'ansible-lint', ['--offline', '--nocolor', '-p', '--profile', 'production', sitePath], {
        cwd: repoRoot,
        allowFailure: true,
        timeoutMs: 180_000,
      });
      expect(result.stdout + result.stderr).toMatch(/Passed with production profile/);
      expect(result.exitCode).toBe(0);
    },
    200_000,
  );

  it.skipIf(ansiblePlaybook === undefined)(
    'offers exactly the stage tags the engine caches, plus seal (skipped when ansible-core is not installed)',
    async () => {
      const result = await run(ansiblePlaybook ?? 'ansible-playbook', ['--list-tags', '-i', 'localhost,', sitePath], {
        cwd: repoRoot,
        timeoutMs: 60_000,
      });
      const line = result.stdout.split('\n').find((l) => l.includes('TASK TAGS:'));
      const tags = /\[(.*)\]/.exec(line ?? '')?.[1]?.split(',').map((t) => t.trim()).sort();
      expect(tags).toEqual(['always', ...STAGES, 'seal'].sort());
    },
    90_000,
  );

  it('runs the stages in order, preflight first and seal last', async () => {
    const roles = await siteRoles();
    expect(roles[0]).toMatchObject({ role: 'preflight', tags: ['always'] });
    expect(roles.at(-1)).toMatchObject({ role: 'seal', tags: ['finalize', 'seal'] });
    const stageIndexes = roles.slice(1).map((r) => STAGES.indexOf(r.tags[0] as (typeof STAGES)[number]));
    expect(stageIndexes.every((i) => i >= 0)).toBe(true);
    expect([...stageIndexes].sort((a, b) => a - b)).toEqual(stageIndexes);
  });

  it('puts every role that needs the Kubernetes package source behind the source gate, and only those', async () => {
    const roles = await siteRoles();
    const gated = roles.filter((r) => r.when === 'kib_k8s_source_available | bool').map((r) => r.role);
    expect(gated).toEqual(GATED_ROLES);
  });

  it('pins every downloaded artifact by a sha256 and never asks for "latest"', async () => {
    const containerd = parse(await readFile(join(playbookDir, 'roles/containerd/defaults/main.yml'), 'utf8')) as Record<
      string,
      unknown
    >;
    for (const key of ['containerd_sha256_by_arch', 'runc_sha256_by_arch']) {
      const byArch = containerd[key] as Record<string, string>;
      expect(byArch.amd64).toMatch(/^[0-9a-f]{64}$/);
    }
    for (const file of await filesUnder(playbookDir)) {
      const text = await readFile(file, 'utf8');
      expect({ file, latest: /state:\s*latest|:latest\b/.test(text) }).toEqual({ file, latest: false });
    }
  });
});

describe('the inventory script (roles/inventory/files/kib-inventory.py)', () => {
  let workDir: string;
  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'kib-inventory-'));
  });
  afterAll(async () => {
    await rm(workDir, { recursive: true, force: true });
  });

  it.skipIf(python3 === undefined || dpkgQuery === undefined)(
    'writes the inventory contract for a host without Kubernetes (skipped without python3 and dpkg-query)',
    async () => {
      const output = join(workDir, 'lib', 'inventory.json');
      await run(
        python3 ?? 'python3',
        [
          join(playbookDir, 'roles/inventory/files/kib-inventory.py'),
          '--output',
          output,
          '--package-manager',
          'dpkg',
          '--kubernetes-source',
          'skipped',
          '--skipped-reason',
          'Kubernetes package source unreachable from the build VM: https://pkgs.k8s.io/',
        ],
        { timeoutMs: 60_000 },
      );
      const inventory = JSON.parse(await readFile(output, 'utf8')) as Record<string, unknown>;
      expect(Object.keys(inventory)).toEqual(['os', 'packages', 'binaries', 'images', 'kubernetes']);
      expect(inventory.os).toMatchObject({ id: expect.any(String), versionId: expect.any(String), prettyName: expect.any(String) });
      const packages = inventory.packages as { name: string; version: string; arch: string; manager: string }[];
      expect(packages.length).toBeGreaterThan(10);
      expect(packages.find((p) => p.name === 'dpkg')).toMatchObject({ manager: 'dpkg', version: expect.stringMatching(/\d/) });
      expect(inventory.kubernetes).toEqual({
        installed: false,
        skippedReason: 'Kubernetes package source unreachable from the build VM: https://pkgs.k8s.io/',
        version: null,
      });
      for (const binary of inventory.binaries as { sha256: string; path: string }[]) {
        expect(binary.sha256).toMatch(/^[0-9a-f]{64}$/);
      }
    },
    90_000,
  );
});

describe('the kubernetes role: what it asks the package manager for', () => {
  let workDir: string;
  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'kib-k8s-role-'));
  });
  afterAll(async () => {
    await rm(workDir, { recursive: true, force: true });
  });

  const LOCKED = {
    kubeadm: '1.37.2-150500.1.1',
    kubelet: '1.37.2-150500.1.1',
    kubectl: '1.37.2-150500.1.1',
    'cri-tools': '1.37.0-150500.1.1',
    'kubernetes-cni': '1.7.1-150500.1.1',
  };

  /**
   * Runs the role's own "Choose the package builds to install" task, taken from tasks/main.yml, on
   * the controller with the role's defaults and the family's vars, and returns what it chose.
   */
  async function chosenSpecs(osFamily: 'redhat' | 'debian', locked: Record<string, string>): Promise<string[]> {
    const tasks = parse(await readFile(join(playbookDir, 'roles/kubernetes/tasks/main.yml'), 'utf8')) as { name: string }[];
    const choose = tasks.find((task) => task.name === 'Choose the package builds to install');
    expect(choose).toBeDefined();
    const play = [
      {
        hosts: 'localhost',
        gather_facts: false,
        vars_files: [join(playbookDir, 'roles/kubernetes/defaults/main.yml'), join(playbookDir, `roles/kubernetes/vars/${osFamily}.yml`)],
        tasks: [choose, { name: 'Write the choice', 'ansible.builtin.copy': { dest: join(workDir, `${osFamily}.json`), content: '{{ kubernetes_install_specs | to_json }}', mode: '0644' } }],
      },
    ];
    const playPath = join(workDir, 'choose.yml');
    await writeFile(playPath, JSON.stringify(play));
    const varsPath = join(workDir, 'vars.json');
    await writeFile(varsPath, JSON.stringify({ kib_kubernetes_version: '1.37.2', kib_kubernetes_series: 'v1.37', kib_kubernetes_locked_packages: locked }));
    await run(ansiblePlaybook ?? 'ansible-playbook', ['-c', 'local', '-i', 'localhost,', '-e', `@${varsPath}`, playPath], { timeoutMs: 60_000 });
    return JSON.parse(await readFile(join(workDir, `${osFamily}.json`), 'utf8')) as string[];
  }

  it.skipIf(ansiblePlaybook === undefined)(
    'installs exactly the locked builds when there is a lock (skipped when ansible-core is not installed)',
    async () => {
      expect(await chosenSpecs('redhat', LOCKED)).toEqual([
        'kubeadm-1.37.2-150500.1.1',
        'kubelet-1.37.2-150500.1.1',
        'kubectl-1.37.2-150500.1.1',
        'cri-tools-1.37.0-150500.1.1',
        'kubernetes-cni-1.7.1-150500.1.1',
      ]);
      expect(await chosenSpecs('debian', { ...LOCKED, kubeadm: '1.37.2-1.1', kubelet: '1.37.2-1.1', kubectl: '1.37.2-1.1', 'cri-tools': '1.37.0-1.1', 'kubernetes-cni': '1.7.1-1.1' })).toEqual([
        'kubeadm=1.37.2-1.1',
        'kubelet=1.37.2-1.1',
        'kubectl=1.37.2-1.1',
        'cri-tools=1.37.0-1.1',
        'kubernetes-cni=1.7.1-1.1',
      ]);
    },
    90_000,
  );

  it.skipIf(ansiblePlaybook === undefined)(
    'without a lock: the pinned release with any build, and cri-tools and kubernetes-cni named, unversioned (skipped when ansible-core is not installed)',
    async () => {
      expect(await chosenSpecs('redhat', {})).toEqual(['kubeadm-1.37.2', 'kubelet-1.37.2', 'kubectl-1.37.2', 'cri-tools', 'kubernetes-cni']);
      // The Debian revision comes from the repository: apt picks the newest build of 1.37.2.
      expect(await chosenSpecs('debian', {})).toEqual(['kubeadm=1.37.2-*', 'kubelet=1.37.2-*', 'kubectl=1.37.2-*', 'cri-tools', 'kubernetes-cni']);
    },
    90_000,
  );

  it('keeps no per-series table of companion versions', async () => {
    for (const file of await filesUnder(join(playbookDir, 'roles'))) {
      const text = await readFile(file, 'utf8');
      expect({ file, table: /kubernetes_companions|kubernetes_cni_version|kubernetes_cri_tools_version|kubernetes_deb_revision/.test(text) }).toEqual({ file, table: false });
    }
  });
});
