import { readdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parse } from 'yaml';
import { canonicalJson, sha256Hex } from '../config/index.js';
import { KibError } from '../core/errors.js';

/**
 * The playbook's stages, in order. Each is a boundary where the disk is frozen as a qcow2 layer,
 * keyed by the chain computed in plan.ts. A stage runs the roles that site.yml tags with its name,
 * plus the roles tagged `always` (preflight).
 */
export const PROVISION_STAGES = [
  { name: 'os', tags: ['os'], summary: 'distribution packages, kernel modules, sysctls, swap, time, firewall, guest agent, cloud-init, networking' },
  { name: 'runtime', tags: ['runtime'], summary: 'containerd, runc, crictl' },
  { name: 'kubernetes', tags: ['kubernetes'], summary: 'kubeadm, kubelet, kubectl, CNI plugins (pinned, held)' },
  { name: 'images', tags: ['images'], summary: 'control-plane images pre-pulled' },
  { name: 'finalize', tags: ['finalize'], summary: 'release file, guest inventory, seal' },
] as const;

export type StageName = (typeof PROVISION_STAGES)[number]['name'];

/**
 * Roles a stage reads although site.yml gives them to another stage. A role that pulls in another
 * role's files (include_role, import_role) reads them at that stage's run: a change to those files
 * must change this stage's key too. A unit test fails when a role's tasks include a role that is
 * neither in its own stage nor listed here.
 */
export const CROSS_STAGE_ROLE_READS: Readonly<Partial<Record<StageName, readonly { role: string; why: string }[]>>> = {
  // roles/kubernetes/tasks/main.yml: include_role containerd, tasks_from config.yml, to point
  // containerd's sandbox image at kubeadm's pause image (with containerd's defaults and handlers).
  kubernetes: [{ role: 'containerd', why: 'include_role tasks_from config.yml (sandbox image = kubeadm pause image)' }],
};

/**
 * kib_* names the playbook sets itself (set_fact), and the engine variables each is derived from.
 * A stage that reads a derived name depends on those inputs. An empty list: derived from the guest
 * alone (fixed by the base image and earlier stages, which the chain already keys).
 */
export const DERIVED_VARIABLES: Readonly<Record<string, readonly string[]>> = {
  // roles/preflight/tasks/main.yml
  kib_kubernetes_series: ['kib_kubernetes_version'],
  kib_kubernetes_semver: ['kib_kubernetes_version'],
  kib_build_date_resolved: ['kib_build_date'],
  kib_firewall_enabled: ['kib_firewall'],
  kib_arch: [],
  // roles/preflight/tasks/source-gate.yml: the request, and the series in the probed URL; the
  // probe's answer itself is not reproducible and is declared in the key (see NETWORK_PROBED).
  kib_k8s_source_available: ['kib_kubernetes_packages', 'kib_kubernetes_version'],
  kib_k8s_skipped_reason: ['kib_kubernetes_packages', 'kib_kubernetes_version'],
  // roles/kubernetes/tasks/main.yml: `kubeadm config images list` of the pinned version
  kib_kubeadm_images: ['kib_kubernetes_version'],
  kib_kubeadm_pause_image: ['kib_kubernetes_version'],
};

/** Derived names whose value comes from probing the network at build time. */
export const NETWORK_PROBED = new Set(['kib_k8s_source_available', 'kib_k8s_skipped_reason']);

/**
 * Engine variables that never change what is written to the disk: a path on this machine. They
 * are left out of every key. (kib_build_user is keyed: its account exists in every layer.)
 */
export const HOST_ONLY_VARIABLES = new Set(['kib_inventory_local_path']);

/** The roles tagged `always` run in every stage. */
const ALWAYS_TAG = 'always';

export interface RoleEntry {
  role: string;
  tags: string[];
  /** The site.yml entry as written (tags, when, vars …), for the key. */
  entry: unknown;
}

export interface StageReads {
  stage: StageName;
  tags: readonly string[];
  /** Roles whose files the stage reads: its own, the always roles, the declared cross reads. */
  roles: string[];
  /** Playbook-relative path → sha256, plus `site.yml#<stage>`: the play header and this stage's role entries. */
  files: Record<string, string>;
  /** Every kib_* name referenced by the stage's own roles and site.yml entries (not the always roles, not group_vars). */
  referencedKibNames: string[];
  /** Every word-like token in those files, to tell whether a provision.vars name is read. */
  tokens: Set<string>;
}

export interface PlaybookStages {
  /** `stages`: per stage; `wholeTree`: site.yml has no roles tagged by stage, every stage reads everything. */
  mode: 'stages' | 'whole-tree';
  stages: StageReads[];
  /** Roles in site.yml that no stage claims (an error for planBuild). */
  unclaimedRoles: string[];
}

/**
 * Works out which playbook files each stage reads, from site.yml's roles and tags: each stage's
 * roles, the `always` roles, the roles declared in CROSS_STAGE_ROLE_READS, site.yml's play header
 * (everything but its roles) and group_vars. A playbook not organized by stage tags is read whole
 * by every stage.
 */
export async function readPlaybookStages(playbookPath: string): Promise<PlaybookStages> {
  const playbookDir = dirname(playbookPath);
  const siteText = await readFile(playbookPath, 'utf8');
  const plays = parse(siteText) as unknown;
  if (!Array.isArray(plays)) throw new KibError('PLAYBOOK_INVALID', `${playbookPath} is not a list of plays`);

  const headers: unknown[] = [];
  const entries: RoleEntry[] = [];
  for (const play of plays) {
    if (play === null || typeof play !== 'object') continue;
    const { roles, ...header } = play as Record<string, unknown>;
    headers.push(header);
    for (const raw of Array.isArray(roles) ? roles : []) {
      const role = typeof raw === 'string' ? raw : ((raw as Record<string, unknown>)?.['role'] ?? (raw as Record<string, unknown>)?.['name']);
      if (typeof role !== 'string') continue;
      const tagsRaw = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>)['tags'] : undefined;
      const tags = Array.isArray(tagsRaw) ? tagsRaw.map(String) : typeof tagsRaw === 'string' ? [tagsRaw] : [];
      entries.push({ role, tags, entry: raw });
    }
  }

  const stageNames: string[] = PROVISION_STAGES.map((s) => s.name);
  const staged = entries.some((e) => e.tags.some((t) => stageNames.includes(t)));
  const shared = await hashFilesUnder(playbookDir, 'group_vars');
  Object.assign(shared, await hashFilesUnder(playbookDir, 'host_vars'));

  if (!staged) {
    const files = { ...(await hashFilesUnder(playbookDir, '')) };
    const text = await readTexts(playbookDir, Object.keys(files));
    const stages = PROVISION_STAGES.map((stage) => ({
      stage: stage.name,
      tags: stage.tags,
      roles: entries.map((e) => e.role),
      files,
      referencedKibNames: kibNames(text),
      tokens: tokensOf(text),
    }));
    return { mode: 'whole-tree', stages, unclaimedRoles: [] };
  }

  const unclaimedRoles = entries.filter((e) => !e.tags.includes(ALWAYS_TAG) && !e.tags.some((t) => stageNames.includes(t))).map((e) => e.role);
  const stages: StageReads[] = [];
  for (const stage of PROVISION_STAGES) {
    const own = entries.filter((e) => e.tags.includes(ALWAYS_TAG) || e.tags.some((t) => (stage.tags as readonly string[]).includes(t)));
    const cross = (CROSS_STAGE_ROLE_READS[stage.name] ?? []).map((c) => c.role);
    const roles = [...new Set([...own.map((e) => e.role), ...cross])];
    const files: Record<string, string> = { ...shared };
    const scanned: string[] = [];
    for (const role of roles) {
      const roleFiles = await hashFilesUnder(playbookDir, join('roles', role));
      Object.assign(files, roleFiles);
      // Variables come from the stage's own roles: the always roles (preflight) only check and
      // derive names, which count where a stage's role reads them; group_vars only hold the
      // defaults of the engine variables, which the engine always passes.
      if (!own.some((e) => e.role === role && e.tags.includes(ALWAYS_TAG))) scanned.push(...Object.keys(roleFiles));
    }
    const siteView = { plays: headers, roles: own.map((e) => e.entry) };
    files[`site.yml#${stage.name}`] = sha256Hex(canonicalJson(siteView));
    const ownEntries = own.filter((e) => !e.tags.includes(ALWAYS_TAG)).map((e) => e.entry);
    const text = `${await readTexts(playbookDir, scanned)}\n${JSON.stringify({ plays: headers, roles: ownEntries })}`;
    stages.push({ stage: stage.name, tags: stage.tags, roles, files, referencedKibNames: kibNames(text), tokens: tokensOf(text) });
  }
  return { mode: 'stages', stages, unclaimedRoles };
}

/**
 * Resolves the kib_* names a stage references to the engine variables it depends on, through
 * DERIVED_VARIABLES. Returns the inputs, whether a network probe is involved, and the names that
 * are neither an input nor derived (a playbook change this table has not caught up with).
 */
export function resolveStageVariables(referenced: readonly string[], inputNames: ReadonlySet<string>): { inputs: string[]; probed: string[]; unknown: string[] } {
  const inputs = new Set<string>();
  const probed: string[] = [];
  const unknown: string[] = [];
  for (const name of referenced) {
    if (HOST_ONLY_VARIABLES.has(name)) continue;
    if (inputNames.has(name)) inputs.add(name);
    else if (name in DERIVED_VARIABLES) {
      for (const source of DERIVED_VARIABLES[name] ?? []) inputs.add(source);
      if (NETWORK_PROBED.has(name)) probed.push(name);
    } else unknown.push(name);
  }
  return { inputs: [...inputs].sort(), probed: probed.sort(), unknown: unknown.sort() };
}

function kibNames(text: string): string[] {
  return [...new Set(text.match(/\bkib_\w+/g) ?? [])].sort();
}

function tokensOf(text: string): Set<string> {
  return new Set(text.match(/[A-Za-z_][A-Za-z0-9_]*/g) ?? []);
}

async function readTexts(root: string, files: readonly string[]): Promise<string> {
  const texts = await Promise.all(files.map((f) => readFile(join(root, f), 'utf8').catch(() => '')));
  return texts.join('\n');
}

/** sha256 of every regular file under root/sub, keyed by its root-relative path ('/' separated). */
async function hashFilesUnder(root: string, sub: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(join(root, rel), { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const childRel = rel === '' ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory()) await walk(childRel);
      else if (entry.isFile()) out[childRel] = sha256Hex(await readFile(join(root, childRel)));
    }
  };
  await walk(sub.split('\\').join('/'));
  return out;
}
