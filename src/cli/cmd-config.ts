import { fetchBaseImage } from '../base-image/index.js';
import { describeSpec, lockPathFor, updateLock, writeLock } from '../config/index.js';
import { UsageError } from '../core/errors.js';
import { cacheDir } from '../pipeline/dirs.js';
import { LayerStore } from '../layers/index.js';
import { explainStages, renderKeyChange } from '../pipeline/explain.js';
import { planningFacts } from '../pipeline/facts.js';
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
  summary: 'Record the resolved base image URL and sha256 in the lock file (image.lock). Only on request.',
  help: `${SPEC_HELP}\n  --update                resolve the base (downloading it if needed) and rewrite the lock file`,
  options: { ...SPEC_OPTIONS, update: { type: 'boolean' } },
  async action(parsed, context) {
    if (parsed.values.update !== true) throw new UsageError('kib lock changes the lock file only with --update', 'Run `kib lock --update`.');
    const reporter = new CliReporter(parsed.globals, context.stderr);
    const { spec } = await resolveSpec(parsed, context, reporter);
    if (spec.configPath === undefined) throw new UsageError('There is no build definition file to lock (using the embedded default)', 'Create image.yaml (see docs/configuration.md) or pass --config FILE.');
    const base = await fetchBaseImage(
      { url: spec.base.url, ...(spec.base.checksumUrl === undefined ? {} : { checksumUrl: spec.base.checksumUrl }), ...(spec.base.sha256 === undefined ? {} : { sha256: spec.base.sha256 }) },
      { cacheDir: cacheDir(context.env), signal: context.signal, reporter },
    );
    const lockPath = lockPathFor(spec.configPath);
    await writeLock(lockPath, updateLock(spec, base));
    context.stdout.write(`${lockPath}: base ${base.url} sha256 ${base.sha256}\n`);
    return 0;
  },
});
