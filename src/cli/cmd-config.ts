import { fetchBaseImage } from '../base-image/index.js';
import { describeSpec } from '../config/index.js';
import { UsageError } from '../core/errors.js';
import { cacheDir } from '../pipeline/dirs.js';
import { LayerStore } from '../layers/index.js';
import { explainStages, renderKeyChange } from '../pipeline/explain.js';
import { planningFacts } from '../pipeline/facts.js';
import { DEFAULT_KUBERNETES_REPO_BASE, KUBERNETES_REPO_BASE_ENV } from '../kubernetes-repo/index.js';
import { updateLockFile } from '../pipeline/lock.js';
import { planBuild } from '../pipeline/plan.js';
import { formatBytes } from '../report/renderers.js';
import { dirname } from 'node:path';
import { stringify } from 'yaml';
import { defineCommand } from './define.js';
import { CliReporter } from './reporting.js';
import { resolveSpec, SPEC_HELP, SPEC_OPTIONS } from './spec.js';
import { toolVersion } from './version.js';

export const planCommand = defineCommand({
  name: 'plan',
  usage: 'plan [--config FILE] [--json] [--explain]',
  summary: 'Print the resolved build definition, the steps and their cache keys. Changes nothing.',
  help: `${SPEC_HELP}\n  --explain               for each provisioning stage: is its layer stored (hit) and, if not, which inputs changed`,
  options: { ...SPEC_OPTIONS, explain: { type: 'boolean' } },
  async action(parsed, context) {
    const { spec, lockPath } = await resolveSpec(parsed, context, new CliReporter(parsed.globals, context.stderr));
    const cache = cacheDir(context.env);
    const planning = await planningFacts(spec, {
      cacheDir: cache,
      repoDir: spec.configPath === undefined ? context.cwd : dirname(spec.configPath),
      toolVersion: toolVersion(),
      env: context.env,
    });
    const plan = await planBuild(spec, planning);
    const explanation = parsed.values.explain === true ? await explainStages(plan.keys, LayerStore.inCache(cache)) : undefined;
    if (parsed.globals.json) {
      const keyDocuments = Object.fromEntries(plan.keys.map((k) => [k.step, k.document]));
      context.stdout.write(
        `${JSON.stringify({ config: describeSpec(spec), lockPath: lockPath ?? null, steps: plan.steps, cacheKeys: plan.cacheKeys, keyDocuments, ...(explanation === undefined ? {} : { explain: explanation }) }, null, 2)}\n`,
      );
      return 0;
    }
    const out: string[] = [];
    out.push(`# build definition: ${spec.configPath ?? '(embedded default)'}${lockPath === undefined ? '' : `, lock: ${lockPath}`}`);
    out.push(stringify(describeSpec(spec)).trimEnd());
    out.push('');
    out.push('# steps');
    for (const step of plan.steps) out.push(`- ${step.phase}: ${step.description}${step.cacheKey === undefined ? '' : `\n    cache key ${step.cacheKey}`}`);
    if (explanation !== undefined) {
      out.push('');
      out.push('# layers');
      for (const stage of explanation) {
        out.push(`- ${stage.stage}: ${stage.status} ${stage.key.slice(0, 16)}  ${stage.reason}`);
        for (const change of stage.changes) out.push(`    ${renderKeyChange(change)}`);
      }
    }
    context.stdout.write(`${out.join('\n')}\n`);
    return 0;
  },
});

export const fetchCommand = defineCommand({
  name: 'fetch',
  usage: 'fetch [--config FILE] [--base PATH|URL]',
  summary: 'Download and verify the base image into the cache, so that later builds need no network for it.',
  help: SPEC_HELP,
  options: SPEC_OPTIONS,
  async action(parsed, context) {
    const reporter = new CliReporter(parsed.globals, context.stderr);
    const { spec } = await resolveSpec(parsed, context, reporter);
    const base = await fetchBaseImage(
      { url: spec.base.url, ...(spec.base.checksumUrl === undefined ? {} : { checksumUrl: spec.base.checksumUrl }), ...(spec.base.sha256 === undefined ? {} : { sha256: spec.base.sha256 }) },
      { cacheDir: cacheDir(context.env), signal: context.signal, reporter },
    );
    if (parsed.globals.json) context.stdout.write(`${JSON.stringify(base, null, 2)}\n`);
    else context.stdout.write(`${base.sha256}  ${formatBytes(base.sizeBytes)}  ${base.path}\n`);
    return 0;
  },
});

export const lockCommand = defineCommand({
  name: 'lock',
  usage: 'lock --update [--config FILE] [--base PATH|URL]',
  summary: 'Record the resolved base image and Kubernetes packages in the lock file (image.lock). Only on request.',
  help: `${SPEC_HELP}\n  --update                resolve the Kubernetes release and packages from pkgs.k8s.io (network needed),\n                          then the base (downloading it if needed), and rewrite the lock file\n\nEnvironment:\n  ${KUBERNETES_REPO_BASE_ENV}   replaces ${DEFAULT_KUBERNETES_REPO_BASE} (a mirror with the same layout)`,
  options: { ...SPEC_OPTIONS, update: { type: 'boolean' } },
  async action(parsed, context) {
    if (parsed.values.update !== true) throw new UsageError('kib lock changes the lock file only with --update', 'Run `kib lock --update`.');
    const reporter = new CliReporter(parsed.globals, context.stderr);
    // The lock being rewritten must not decide what it is rewritten to.
    const { spec } = await resolveSpec(parsed, context, reporter, { applyLock: false });
    const repoBase = context.env[KUBERNETES_REPO_BASE_ENV];
    const { lockPath, lock } = await updateLockFile(spec, {
      cacheDir: cacheDir(context.env),
      signal: context.signal,
      reporter,
      ...(repoBase === undefined || repoBase === '' ? {} : { kubernetesRepoBase: repoBase }),
    });
    if (parsed.globals.json) {
      context.stdout.write(`${JSON.stringify({ lockPath, lock }, null, 2)}\n`);
      return 0;
    }
    const lines = [`${lockPath}: base ${lock.base.url} sha256 ${lock.base.sha256}`];
    if (lock.kubernetes !== undefined) {
      lines.push(`${lockPath}: Kubernetes ${lock.kubernetes.version} from ${lock.kubernetes.source}: ${Object.entries(lock.kubernetes.packages).map(([name, version]) => `${name} ${version}`).join(', ')}`);
    }
    context.stdout.write(`${lines.join('\n')}\n`);
    return 0;
  },
});
