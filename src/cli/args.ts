import { parseArgs } from 'node:util';
import { UsageError } from '../core/errors.js';

export interface GlobalOptions {
  logFormat: 'human' | 'json';
  debug: boolean;
  verbose: boolean;
  json: boolean;
}

type OptionSpec = Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>;

const GLOBAL_OPTIONS = {
  'log-format': { type: 'string' },
  debug: { type: 'boolean' },
  verbose: { type: 'boolean', short: 'v' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies OptionSpec;

export interface ParsedCommand {
  globals: GlobalOptions;
  help: boolean;
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

/** Parses one command's argv; unknown flags are usage errors (exit 2) that name the flag. */
export function parseCommandArgs(command: string, argv: readonly string[], options: OptionSpec): ParsedCommand {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: { ...GLOBAL_OPTIONS, ...options }, allowPositionals: true, strict: true });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new UsageError(`kib ${command}: ${message.replace(/^TypeError \[[A-Z_]+\]: /, '')}`, `Run \`kib ${command} --help\` for the options.`);
  }
  const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
  const logFormat = values['log-format'] ?? 'human';
  if (logFormat !== 'human' && logFormat !== 'json') {
    throw new UsageError(`--log-format must be "human" or "json", got "${String(logFormat)}"`);
  }
  return {
    globals: {
      logFormat,
      debug: values.debug === true,
      verbose: values.verbose === true,
      json: values.json === true,
    },
    help: values.help === true,
    values,
    positionals: parsed.positionals,
  };
}

export function stringOption(values: ParsedCommand['values'], name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}
