import { applyLock, loadBuildSpec, lockPathFor, readLock, type BuildSpec } from '../config/index.js';
import type { Reporter } from '../report/events.js';
import { stringOption, type ParsedCommand } from './args.js';
import type { CommandContext } from './define.js';

export const SPEC_OPTIONS = {
  config: { type: 'string', short: 'c' },
  base: { type: 'string' },
  'base-sha256': { type: 'string' },
  output: { type: 'string', short: 'o' },
  accelerator: { type: 'string' },
  firmware: { type: 'string' },
} as const;

export const SPEC_HELP = [
  'Build definition options:',
  '  -c, --config FILE       build definition (default: ./image.yaml, else the embedded Rocky 9 default)',
  '  --base PATH|URL         base image to use instead of the definition\'s (a local qcow2 works offline)',
  '  --base-sha256 HEX       expected sha256 of --base',
  '  -o, --output DIR        output directory (default: outputs.dir of the definition)',
  '  --accelerator auto|kvm|tcg',
  '  --firmware bios|uefi    firmware of the build VM',
].join('\n');

/** Loads and validates the build definition, then applies its lock file (if it is for the same base). */
export async function resolveSpec(
  parsed: ParsedCommand,
  context: CommandContext,
  reporter: Reporter | undefined,
  options: { applyLock?: boolean } = {},
): Promise<{ spec: BuildSpec; lockPath: string | undefined }> {
  const values = parsed.values;
  const overrides = {
    ...(stringOption(values, 'base') === undefined ? {} : { baseUrl: stringOption(values, 'base') as string }),
    ...(stringOption(values, 'base-sha256') === undefined ? {} : { baseSha256: stringOption(values, 'base-sha256') as string }),
    ...(stringOption(values, 'output') === undefined ? {} : { outputDir: stringOption(values, 'output') as string }),
    ...(stringOption(values, 'accelerator') === undefined ? {} : { accelerator: stringOption(values, 'accelerator') as string }),
    ...(stringOption(values, 'firmware') === undefined ? {} : { firmware: stringOption(values, 'firmware') as string }),
  };
  const configPath = stringOption(values, 'config');
  const spec = await loadBuildSpec({ ...(configPath === undefined ? {} : { configPath }), overrides, cwd: context.cwd });
  if (spec.configPath === undefined) return { spec, lockPath: undefined };
  const lockPath = lockPathFor(spec.configPath);
  if (options.applyLock === false) return { spec, lockPath };
  // Applied even when there is none: a kubernetes.series then gets its "not resolved" note.
  const lock = await readLock(lockPath);
  const applied = applyLock(spec, lock, lockPath);
  for (const note of applied.notes) reporter?.emit({ type: 'warning', message: note });
  return { spec: applied.spec, lockPath };
}
