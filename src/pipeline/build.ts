import { mkdir, rm } from 'node:fs/promises';
import { arch } from 'node:os';
import { join } from 'node:path';
import { fetchBaseImage } from '../base-image/index.js';
import { type BuildSpec, requireKubernetesVersion } from '../config/index.js';
import { playbookVarsFromFacts, type BuildFacts } from '../core/build-facts.js';
import { CleanupStack } from '../core/cleanup.js';
import type { Artifact, BaseImage } from '../core/types.js';
import { artifactStem, createStaging, discardStaging, exportArtifacts, finalizeOutput, hashTree } from '../export/index.js';
import { LayerStore } from '../layers/index.js';
import { provisionStages, type ProvisionResult } from '../provision/provision.js';
import type { Reporter } from '../report/events.js';
import { timePhase } from '../report/renderers.js';
import { detectAccelerator, reapOrphans } from '../vm/index.js';
import { buildToolNeeds, checkHostTools } from './preflight.js';
import { describeGitVersion, type GitVersion } from './git-version.js';
import { newBuildId } from './dirs.js';
import { assembleBuildFacts, resolveBuildDate } from './facts.js';
import { computeStageKeys } from './plan.js';
import { findResumePoint, plannedStages } from './resume.js';
import { checkUpToDate, writeBuildKeyRecord } from './up-to-date.js';
import { reapStaleWorkDirs, recordBuildOwner } from './work-dirs.js';

export interface BuildOptions {
  cacheDir: string;
  stateDir: string;
  /** Directory whose Git tags version the image (the build definition's repository). */
  repoDir: string;
  toolVersion: string;
  signal: AbortSignal;
  reporter: Reporter;
  /** Reporter for the build's own log file, created by the caller once the build id is known. */
  onBuildId?: (buildId: string, logDir: string) => void;
  /** The stage layer store; default: `<cacheDir>/layers` with the default size cap. */
  layers?: LayerStore;
  /** Build even when the output directory already holds the artifacts of the same inputs. */
  force?: boolean;
}

export interface BuildResult {
  buildId: string;
  logDir: string;
  outputDir: string;
  artifacts: Artifact[];
  base: BaseImage;
  version: GitVersion;
  facts: BuildFacts;
  accelerator: { accelerator: 'kvm' | 'tcg'; reason: string };
  phasesMs: { preflight: number; base: number; provision: number; export: number };
  /** Empty for a build that found its artifacts already made. */
  provision: ProvisionResult['stepsMs'] | Record<string, never>;
  /** True when every key hit and the output directory already held the artifacts: nothing was done. */
  upToDate: boolean;
  /** The export key (chaining every stage key) the artifacts were made under. */
  exportKey: string;
}

/**
 * `kib build`, as a recipe: preflight → base → keys (done already? → stop) → provision the stages
 * the layer store does not have → export → finalize.
 * Every temporary thing is registered on a cleanup stack, so a failure or Ctrl-C at any point
 * leaves the cache and the output directory as they were and no QEMU behind; layers stored before
 * an interrupt stay, whole, for the next build.
 */
export async function buildImage(spec: BuildSpec, options: BuildOptions): Promise<BuildResult> {
  const { reporter, signal } = options;
  // A series that no lock resolves has no release to install: refuse before anything starts.
  requireKubernetesVersion(spec);
  const startedAt = new Date();
  const buildId = newBuildId(spec.name, startedAt);
  const logDir = join(options.stateDir, 'builds', buildId);
  await mkdir(logDir, { recursive: true });
  await recordBuildOwner(logDir, buildId);
  options.onBuildId?.(buildId, logDir);

  await using cleanup = new CleanupStack((label, error) =>
    reporter.emit({ type: 'warning', message: `cleanup '${label}' failed: ${error instanceof Error ? error.message : String(error)}` }),
  );

  const preflight = await timePhase(reporter, 'preflight', 'checking host tools and the accelerator', async () => {
    await checkHostTools(buildToolNeeds(spec));
    const reaped = await reapOrphans(options.stateDir);
    if (reaped > 0) reporter.emit({ type: 'warning', message: `stopped ${reaped} QEMU process(es) left behind by an earlier kib that was killed` });
    const staleWork = await reapStaleWorkDirs(options.stateDir);
    for (const dir of staleWork) reporter.emit({ type: 'step', phase: 'preflight', message: `removed ${dir.path} (${dir.sizeBytes} bytes), left behind by a build that is gone` });
    const accelerator = await detectAccelerator(spec.vm.accelerator);
    reporter.emit({ type: 'step', phase: 'preflight', message: `accelerator: ${accelerator.accelerator} (${accelerator.reason})` });
    if (accelerator.accelerator === 'tcg' && spec.vm.accelerator === 'auto') {
      reporter.emit({ type: 'warning', message: 'no working KVM on this machine: the build VM runs under software emulation (TCG), which works but is several times slower' });
    }
    const version = await describeGitVersion(options.repoDir);
    const buildDate = resolveBuildDate(startedAt, process.env, version);
    reporter.emit({ type: 'step', phase: 'preflight', message: `image version ${version.version}, build date ${buildDate.date} (${describeDateSource(buildDate.source)})` });
    return { accelerator, version, buildDate: buildDate.date };
  });
  const { accelerator, version, buildDate } = preflight.value;

  const base = await timePhase(reporter, 'base', `fetching and verifying ${spec.base.url}`, () =>
    fetchBaseImage(
      { url: spec.base.url, ...(spec.base.checksumUrl === undefined ? {} : { checksumUrl: spec.base.checksumUrl }), ...(spec.base.sha256 === undefined ? {} : { sha256: spec.base.sha256 }) },
      { cacheDir: options.cacheDir, signal, reporter },
    ),
  );

  const facts = assembleBuildFacts(spec, {
    version,
    base: base.value,
    playbookSha256: await hashTree(join(spec.provision.playbookPath, '..')),
    toolVersion: options.toolVersion,
    accelerator: accelerator.accelerator,
    hostArch: arch(),
    buildDate,
  });

  const keys = await computeStageKeys(spec, { facts, baseResolved: true });
  const exportKey = keys.find((k) => k.step === 'export')?.key as string;
  const stem = artifactStem({ name: spec.name, kubernetesVersion: facts.kubernetes.version, imageVersion: version.version });
  if (options.force !== true) {
    const done = await checkUpToDate(join(spec.outputs.dir, stem), exportKey);
    if (done.status === 'up-to-date') {
      reporter.emit({ type: 'step', phase: 'preflight', message: `up to date: ${join(spec.outputs.dir, stem)} already holds the artifacts of export key ${exportKey.slice(0, 12)} (every stage key is unchanged); nothing to do (--force rebuilds)` });
      return {
        buildId, logDir, outputDir: join(spec.outputs.dir, stem), artifacts: done.artifacts, base: base.value, version, facts, accelerator,
        phasesMs: { preflight: preflight.durationMs, base: base.durationMs, provision: 0, export: 0 }, provision: {}, upToDate: true, exportKey,
      };
    }
  }

  const layers = options.layers ?? LayerStore.inCache(options.cacheDir);
  const stages = plannedStages(keys);
  const resume = await findResumePoint(layers, stages, { signal, reporter });
  cleanup.defer('release the layer lease', resume.release);
  const workDir = join(logDir, 'work');
  cleanup.defer('remove the work directory', () => rm(workDir, { recursive: true, force: true }));
  const provision = await timePhase(reporter, 'provision', `provisioning with ${spec.provision.playbookPath}`, () =>
    provisionStages(
      {
        base: base.value,
        name: spec.name,
        diskSizeBytes: spec.disk.sizeBytes,
        vm: { cpus: spec.vm.cpus, memoryMiB: spec.vm.memoryMiB, accelerator: accelerator.accelerator, firmware: spec.vm.firmware, bootTimeoutMs: spec.vm.bootTimeoutMs },
        playbookPath: spec.provision.playbookPath,
        vars: playbookVarsFromFacts(facts),
      },
      { stages, start: resume.start, layers },
      { workDir, logDir, stateDir: options.stateDir, signal, reporter },
    ),
  );

  const staging = await createStaging(spec.outputs.dir, buildId);
  cleanup.defer('discard the staging directory', () => discardStaging(staging));

  const exported = await timePhase(reporter, 'export', `writing ${spec.outputs.formats.join(', ')} to ${spec.outputs.dir}`, async () => {
    const phasesSoFar = { preflight: preflight.durationMs, base: base.durationMs, provision: provision.durationMs };
    return exportArtifacts({
      disk: provision.value.disk,
      stagingDir: staging,
      stem,
      formats: spec.outputs.formats,
      compress: spec.outputs.compress,
      inventory: provision.value.inventory,
      meta: { facts, startedAt: startedAt.toISOString(), phasesMs: phasesSoFar, provisionStepsMs: provision.value.stepsMs },
      signal,
      reporter,
    });
  });

  await writeBuildKeyRecord(staging, { exportKey, keys: Object.fromEntries(keys.map((k) => [k.step, k.key])) });
  const outputDir = await finalizeOutput(staging, spec.outputs.dir, stem);
  const artifacts = exported.value.map((a) => ({ ...a, path: join(outputDir, a.path.slice(staging.length + 1)) }));
  for (const artifact of artifacts) reporter.emit({ type: 'artifact', path: artifact.path, kind: artifact.kind, sha256: artifact.sha256, sizeBytes: artifact.sizeBytes });

  return {
    buildId,
    logDir,
    outputDir,
    artifacts,
    base: base.value,
    version,
    facts,
    accelerator,
    phasesMs: { preflight: preflight.durationMs, base: base.durationMs, provision: provision.durationMs, export: exported.durationMs },
    provision: provision.value.stepsMs,
    upToDate: false,
    exportKey,
  };
}

function describeDateSource(source: ReturnType<typeof resolveBuildDate>['source']): string {
  if (source === 'SOURCE_DATE_EPOCH') return 'from SOURCE_DATE_EPOCH';
  if (source === 'git-commit') return 'the commit date of the clean build definition repository';
  return 'now: the build definition repository has local changes or is not in Git, so the finalize stage cannot hit';
}
