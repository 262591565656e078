import { canonicalJson, sha256Hex, type BuildSpec } from '../config/index.js';
import { manifestSectionsFromFacts, playbookVarsFromFacts, type BuildFacts } from '../core/build-facts.js';
import { KibError } from '../core/errors.js';
import { renderAnsibleConfig } from '../provision/ansible.js';
import { renderBuildMetaData, renderBuildUserData, renderFinalSealScript } from '../provision/cloud-config.js';
import { BUILD_USER } from '../provision/provision.js';
import { buildToolNeeds } from './preflight.js';
import { PROVISION_STAGES, readPlaybookStages, resolveStageVariables } from './stage-inputs.js';

export { PROVISION_STAGES } from './stage-inputs.js';

export interface PlanStep {
  phase: string;
  description: string;
  cacheKey?: string;
}

/**
 * What a cache key is the sha256 of (canonical JSON). Stored beside each layer as key.json, so a
 * miss can say which field changed. `declared` names inputs that are deliberately not hashed, or
 * not reproducible, and is part of the document so the key says what it does not cover.
 */
export interface KeyDocument {
  kind: 'kib.cache-key';
  schema: 1;
  step: string;
  [field: string]: unknown;
}

export interface PlannedKey {
  step: string;
  key: string;
  document: KeyDocument;
}

export interface BuildPlan {
  spec: BuildSpec;
  steps: PlanStep[];
  cacheKeys: Record<string, string>;
  /** In order: base, provision.disk, provision.<stage> …, export. */
  keys: PlannedKey[];
  hostTools: string[];
}

export interface PlanContext {
  facts: BuildFacts;
  /** False when the base image has not been fetched and has no pinned sha256: keys use its URL. */
  baseResolved: boolean;
}

/** Code-side inputs, rendered with placeholders where a build puts per-run values. */
function engineInputs(): { ansibleConfig: string; cloudConfig: string; sealScript: string } {
  return {
    ansibleConfig: sha256Hex(renderAnsibleConfig({ logPath: '<build>/ansible.log', controlPathDir: '<control-path-dir>' })),
    cloudConfig: sha256Hex(
      renderBuildUserData({ user: BUILD_USER, publicKey: 'ssh-ed25519 <ephemeral build key>' }) + renderBuildMetaData({ instanceId: '<per build>', hostname: 'kib-build' }),
    ),
    sealScript: sha256Hex(renderFinalSealScript(BUILD_USER)),
  };
}

export function keyOf(document: KeyDocument): string {
  return sha256Hex(canonicalJson(document));
}

/**
 * Computes the chained cache keys of a build from its facts. Each stage's key covers exactly what
 * can change its result: the previous key (so a change invalidates what follows), the playbook
 * files the stage reads (its roles, the always roles, declared cross-stage reads, site.yml's view
 * of the stage, group_vars, and the ansible.cfg the engine writes), the engine variables its own
 * roles reference, and the code-side inputs where they act: the build cloud-config at the first
 * boot (first stage), the seal script after the last stage.
 */
export async function computeStageKeys(spec: BuildSpec, context: PlanContext): Promise<PlannedKey[]> {
  const { facts } = context;
  const keys: PlannedKey[] = [];
  const push = (document: KeyDocument): string => {
    const key = keyOf(document);
    keys.push({ step: document.step, key, document });
    return key;
  };

  const baseKey = context.baseResolved
    ? facts.base.sha256
    : push({ kind: 'kib.cache-key', schema: 1, step: 'base', url: spec.base.url, checksumUrl: spec.base.checksumUrl ?? null });
  if (context.baseResolved) keys.push({ step: 'base', key: baseKey, document: { kind: 'kib.cache-key', schema: 1, step: 'base', sha256: baseKey } });
  let previous = push({ kind: 'kib.cache-key', schema: 1, step: 'provision.disk', base: baseKey, diskSizeBytes: facts.disk.sizeBytes });

  const playbook = await readPlaybookStages(spec.provision.playbookPath);
  if (playbook.unclaimedRoles.length > 0) {
    throw new KibError('PLAYBOOK_STAGE_UNCLAIMED', `${spec.provision.playbookPath} lists role(s) no stage runs: ${playbook.unclaimedRoles.join(', ')}`, {
      hint: `Tag each role with one of the stages (${PROVISION_STAGES.map((s) => s.name).join(', ')}) or with always.`,
    });
  }
  const allVars: Record<string, unknown> = { ...playbookVarsFromFacts(facts), kib_build_user: BUILD_USER };
  const inputNames = new Set(Object.keys(allVars).filter((name) => name.startsWith('kib_')));
  const userVarNames = Object.keys(facts.playbook.vars).filter((name) => !name.startsWith('kib_'));
  const readBySomeStage = new Set(userVarNames.filter((name) => playbook.stages.some((s) => s.tokens.has(name))));
  const engine = engineInputs();
  const last = playbook.stages.length - 1;

  playbook.stages.forEach((stage, index) => {
    const resolved = resolveStageVariables(stage.referencedKibNames, inputNames);
    const vars: Record<string, unknown> = {};
    for (const name of resolved.inputs) vars[name] = allVars[name] ?? null;
    const declared: Record<string, string> = {
      hostTools: 'the versions of ansible-core and QEMU on this host are not keyed',
    };
    for (const name of userVarNames) {
      if (stage.tokens.has(name)) vars[name] = facts.playbook.vars[name];
      else if (index === 0 && !readBySomeStage.has(name)) {
        // Read by no stage's files as far as a scan can tell (an Ansible setting, say): keyed at the
        // first stage, so a change still invalidates every layer.
        vars[name] = facts.playbook.vars[name];
        declared[`vars.${name}`] = 'provision.vars entry not referenced by any stage: keyed at the first stage';
      }
    }
    if (resolved.probed.length > 0 && facts.kubernetes.packages === 'auto') {
      declared.kubernetesPackageSource =
        'kubernetes.packages is auto: whether pkgs.k8s.io, GitHub and registry.k8s.io were reachable is probed at build time and not keyed; a layer built without them is reused once they are reachable';
    }
    if (resolved.unknown.length > 0) declared.unresolvedVariables = `kib_* names neither passed by the engine nor derived from its variables (keyed by file content only): ${resolved.unknown.join(', ')}`;
    if ('kib_build_date' in vars) {
      declared.buildDate = 'kib_build_date changes on every build unless SOURCE_DATE_EPOCH is set; it is read only by this stage';
    }
    if (playbook.mode === 'whole-tree') declared.playbook = 'site.yml tags no role with a stage: every stage reads the whole playbook directory';
    const document: KeyDocument = {
      kind: 'kib.cache-key',
      schema: 1,
      step: `provision.${stage.stage}`,
      previous,
      tags: [...stage.tags],
      roles: [...stage.roles].sort(),
      playbook: stage.files,
      vars,
      engine: {
        ansibleConfig: engine.ansibleConfig,
        ...(index === 0 ? { cloudConfig: engine.cloudConfig } : {}),
        ...(index === last ? { sealScript: engine.sealScript } : {}),
      },
      declared,
    };
    previous = push(document);
  });

  push({
    kind: 'kib.cache-key',
    schema: 1,
    step: 'export',
    previous,
    formats: [...spec.outputs.formats],
    compress: spec.outputs.compress,
    // What manifest.json, the SBOM and the containerDisk labels say about the build; not the
    // measured timings, the accelerator or the host, which describe one run.
    manifest: manifestSectionsFromFacts(facts),
    declared: { measured: 'timings, accelerator and host architecture in manifest.json are not keyed' },
  });
  return keys;
}

/**
 * What `kib build` would do with this spec, and the cache keys of each step (see computeStageKeys).
 */
export async function planBuild(spec: BuildSpec, context: PlanContext): Promise<BuildPlan> {
  const keys = await computeStageKeys(spec, context);
  const cacheKeys = Object.fromEntries(keys.map((k) => [k.step, k.key]));
  const base = spec.base.sha256 !== undefined ? `verify sha256 ${spec.base.sha256}` : spec.base.checksumUrl !== undefined ? `verify against ${spec.base.checksumUrl}` : 'hash (no checksum given: trusted local file)';
  const steps: PlanStep[] = [
    { phase: 'preflight', description: `check host tools (${buildToolNeeds(spec).map((t) => t.command).join(', ')}) and the accelerator (${spec.vm.accelerator})` },
    { phase: 'base', description: `fetch ${spec.base.url}, ${base}, store in the content-addressed cache${context.baseResolved ? '' : ' (not fetched yet: the keys below use its URL until it is)'}`, cacheKey: cacheKeys.base as string },
    { phase: 'provision', description: `overlay of ${spec.disk.sizeBytes} bytes on the base; boot (${spec.vm.cpus} vCPU, ${spec.vm.memoryMiB} MiB, ${spec.vm.firmware}); wait for SSH and cloud-init`, cacheKey: cacheKeys['provision.disk'] as string },
    ...PROVISION_STAGES.map((stage) => ({ phase: `provision:${stage.name}`, description: stage.summary, cacheKey: cacheKeys[`provision.${stage.name}`] as string })),
    { phase: 'provision', description: 'remove the build user, fstrim, power off' },
    { phase: 'export', description: `write ${spec.outputs.formats.join(', ')}${spec.outputs.compress ? ' (compressed qcow2)' : ''}, SHA256SUMS, manifest.json, sbom.cdx.json to a staging directory, then move into ${spec.outputs.dir}`, cacheKey: cacheKeys.export as string },
  ];
  return { spec, steps, cacheKeys, keys, hostTools: buildToolNeeds(spec).map((t) => t.command) };
}
