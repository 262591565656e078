import { join } from 'node:path';
import { canonicalJson, sha256Hex, type BuildSpec } from '../config/index.js';
import { hashTree } from '../export/index.js';
import { buildToolNeeds } from './preflight.js';

/**
 * The playbook's stages, in order. Today they run in one VM session; each is a boundary where a
 * qcow2 layer could be cached, keyed by the chain below.
 */
export const PROVISION_STAGES = [
  { name: 'os', tags: ['os'], summary: 'distribution packages, kernel modules, sysctls, swap, time, firewall, guest agent, cloud-init, networking' },
  { name: 'runtime', tags: ['runtime'], summary: 'containerd, runc, crictl' },
  { name: 'kubernetes', tags: ['kubernetes'], summary: 'kubeadm, kubelet, kubectl, CNI plugins (pinned, held)' },
  { name: 'images', tags: ['images'], summary: 'control-plane images pre-pulled' },
  { name: 'finalize', tags: ['finalize'], summary: 'release file, guest inventory, seal' },
] as const;

export interface PlanStep {
  phase: string;
  description: string;
  cacheKey?: string;
}

export interface BuildPlan {
  spec: BuildSpec;
  steps: PlanStep[];
  cacheKeys: Record<string, string>;
  hostTools: string[];
}

/**
 * What `kib build` would do with this spec, and the cache keys of each step: the sha256 of the
 * canonical JSON of exactly the inputs that matter, chained so a change invalidates what follows.
 */
export async function planBuild(spec: BuildSpec): Promise<BuildPlan> {
  const baseKeyInput = spec.base.sha256 !== undefined ? { sha256: spec.base.sha256 } : { url: spec.base.url, checksumUrl: spec.base.checksumUrl ?? null };
  const baseKey = spec.base.sha256 ?? sha256Hex(canonicalJson(baseKeyInput));
  const playbookTree = await hashTree(join(spec.provision.playbookPath, '..'));
  const stageVars = {
    kubernetesVersion: spec.kubernetes.version ?? null,
    kubernetesSeries: spec.kubernetes.series,
    kubernetesPackages: spec.kubernetes.packages,
    kubernetesLockedPackages: spec.kubernetes.lockedPackages ?? null,
    selinux: spec.node.selinux,
    firewall: spec.node.firewall,
    osFamily: spec.base.osFamily,
    vars: spec.provision.vars,
  };
  const cacheKeys: Record<string, string> = { base: baseKey };
  let previous = sha256Hex(canonicalJson({ base: baseKey, diskSizeBytes: spec.disk.sizeBytes }));
  cacheKeys['provision.disk'] = previous;
  for (const stage of PROVISION_STAGES) {
    previous = sha256Hex(canonicalJson({ previous, stage: stage.name, tags: stage.tags, playbookTree, vars: stageVars }));
    cacheKeys[`provision.${stage.name}`] = previous;
  }
  cacheKeys.export = sha256Hex(canonicalJson({ previous, formats: spec.outputs.formats, compress: spec.outputs.compress }));

  const base = spec.base.sha256 !== undefined ? `verify sha256 ${spec.base.sha256}` : spec.base.checksumUrl !== undefined ? `verify against ${spec.base.checksumUrl}` : 'hash (no checksum given: trusted local file)';
  const steps: PlanStep[] = [
    { phase: 'preflight', description: `check host tools (${buildToolNeeds(spec).map((t) => t.command).join(', ')}) and the accelerator (${spec.vm.accelerator})` },
    { phase: 'base', description: `fetch ${spec.base.url}, ${base}, store in the content-addressed cache`, cacheKey: cacheKeys.base as string },
    { phase: 'provision', description: `overlay of ${spec.disk.sizeBytes} bytes on the base; boot (${spec.vm.cpus} vCPU, ${spec.vm.memoryMiB} MiB, ${spec.vm.firmware}); wait for SSH and cloud-init`, cacheKey: cacheKeys['provision.disk'] as string },
    ...PROVISION_STAGES.map((stage) => ({ phase: `provision:${stage.name}`, description: stage.summary, cacheKey: cacheKeys[`provision.${stage.name}`] as string })),
    { phase: 'provision', description: 'remove the build user, fstrim, power off' },
    { phase: 'export', description: `write ${spec.outputs.formats.join(', ')}${spec.outputs.compress ? ' (compressed qcow2)' : ''}, SHA256SUMS, manifest.json, sbom.cdx.json to a staging directory, then move into ${spec.outputs.dir}`, cacheKey: cacheKeys.export as string },
  ];
  return { spec, steps, cacheKeys, hostTools: buildToolNeeds(spec).map((t) => t.command) };
}
