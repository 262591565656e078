import { resolve } from 'node:path';
import { parseDuration, parseSize } from '../config/index.js';
import { UsageError } from '../core/errors.js';
import { stateDir } from '../pipeline/dirs.js';
import { checkHostTools, verifyToolNeeds } from '../pipeline/preflight.js';
import { timePhase } from '../report/renderers.js';
import { hasFailures, renderCheckJson, summarize } from '../verify/index.js';
import { verifyArtifact } from '../verify/verify-artifact.js';
import { stringOption } from './args.js';
import { defineCommand } from './define.js';
import { CliReporter } from './reporting.js';

export const verifyCommand = defineCommand({
  name: 'verify',
  usage: 'verify ARTIFACT [--grow SIZE] [--seed nocloud|configdrive] [--json]',
  summary: 'Boot a fresh copy of a finished artifact like KubeVirt would and check it: one line per check, exit 1 on any failure.',
  help: [
    'Options:',
    '  --manifest FILE            manifest.json of the artifact (default: the one beside it)',
    '  --grow SIZE                grow the disk before the first boot (e.g. 2G); the root filesystem must follow',
    '  --seed nocloud|configdrive cloud-init datasource of the verify VM (default nocloud; Cluster API on KubeVirt uses configdrive)',
    '  --firmware bios|uefi       (default bios, as KubeVirt)',
    '  --accelerator auto|kvm|tcg (default auto)',
    '  --memory SIZE              (default 2G)   --cpus N (default 2)   --boot-timeout DURATION (default 10m)',
    '  --skip-hygiene             do not read the artifact offline (hygiene checks need debugfs or xfs_db)',
    '',
    'Checks that cannot apply (Kubernetes packages skipped by an offline build, SELinux on Debian) are',
    'reported as skipped with their reason. Hygiene (host keys, machine-id, cloud-init state, build user,',
    '/var/log) is checked on the artifact itself, before any boot changes it.',
  ].join('\n'),
  options: {
    manifest: { type: 'string' },
    grow: { type: 'string' },
    seed: { type: 'string' },
    firmware: { type: 'string' },
    accelerator: { type: 'string' },
    memory: { type: 'string' },
    cpus: { type: 'string' },
    'boot-timeout': { type: 'string' },
    'skip-hygiene': { type: 'boolean' },
  },
  async action(parsed, context) {
    const [artifact, ...extra] = parsed.positionals;
    if (artifact === undefined || extra.length > 0) throw new UsageError('kib verify takes exactly one ARTIFACT (a .qcow2 or .raw from the output directory)', 'Example: kib verify output/<stem>/<stem>.qcow2');
    const values = parsed.values;
    const seed = stringOption(values, 'seed') ?? 'nocloud';
    const firmware = stringOption(values, 'firmware') ?? 'bios';
    const accelerator = stringOption(values, 'accelerator') ?? 'auto';
    const problems: string[] = [];
    if (seed !== 'nocloud' && seed !== 'configdrive') problems.push(`--seed must be nocloud or configdrive, got "${seed}"`);
    if (firmware !== 'bios' && firmware !== 'uefi') problems.push(`--firmware must be bios or uefi, got "${firmware}"`);
    if (accelerator !== 'auto' && accelerator !== 'kvm' && accelerator !== 'tcg') problems.push(`--accelerator must be auto, kvm or tcg, got "${accelerator}"`);
    const number = (name: string, parse: (text: string) => number, fallback: number): number => {
      const text = stringOption(values, name);
      if (text === undefined) return fallback;
      try {
        return parse(text);
      } catch (error) {
        problems.push(`--${name}: ${(error as Error).message}`);
        return fallback;
      }
    };
    const growBytes = number('grow', parseSize, 0);
    const memoryBytes = number('memory', parseSize, 2 * 1024 ** 3);
    const cpus = number('cpus', (t) => {
      const n = Number(t);
      if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`expected 1..64, got "${t}"`);
      return n;
    }, 2);
    const bootTimeoutMs = number('boot-timeout', parseDuration, 600_000);
    if (problems.length > 0) throw new UsageError(`kib verify: ${problems.join('; ')}`);

    await checkHostTools(verifyToolNeeds());
    const reporter = new CliReporter(parsed.globals, context.stderr);
    const manifest = stringOption(values, 'manifest');
    const { value } = await timePhase(reporter, 'verify', `verifying ${artifact}`, () =>
      verifyArtifact(resolve(context.cwd, artifact), {
        stateDir: stateDir(context.env),
        ...(manifest === undefined ? {} : { manifestPath: resolve(context.cwd, manifest) }),
        growBytes,
        seed: seed as 'nocloud' | 'configdrive',
        firmware: firmware as 'bios' | 'uefi',
        accelerator: accelerator as 'auto' | 'kvm' | 'tcg',
        cpus,
        memoryMiB: Math.floor(memoryBytes / 1024 ** 2),
        bootTimeoutMs,
        skipHygiene: values['skip-hygiene'] === true,
        signal: context.signal,
        reporter,
      }),
    );
    const summary = summarize(value.results);
    if (parsed.globals.json) {
      const report = JSON.parse(renderCheckJson(value.results)) as Record<string, unknown>;
      context.stdout.write(`${JSON.stringify({ artifact, expected: value.expected, bootMs: Math.round(value.bootMs), ...report }, null, 2)}\n`);
    } else {
      context.stdout.write(`${summary.pass} passed, ${summary.fail} failed, ${summary.skip} skipped (boot to SSH ${(value.bootMs / 1000).toFixed(1)} s)\n`);
    }
    return hasFailures(value.results) ? 1 : 0;
  },
});
