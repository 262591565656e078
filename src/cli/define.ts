import type { ParsedCommand } from './args.js';
import { parseCommandArgs } from './args.js';

export interface CommandContext {
  signal: AbortSignal;
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  cwd: string;
  env: NodeJS.ProcessEnv;
}

export interface CommandDefinition {
  name: string;
  usage: string;
  summary: string;
  help: string;
  options: Parameters<typeof parseCommandArgs>[2];
  run(argv: readonly string[], context: CommandContext): Promise<number>;
}

/** Parses argv for a command, printing its help (exit 0) when asked. */
export function defineCommand(
  definition: Omit<CommandDefinition, 'run'> & { action(parsed: ParsedCommand, context: CommandContext): Promise<number> },
): CommandDefinition {
  return {
    ...definition,
    async run(argv, context) {
      const parsed = parseCommandArgs(definition.name, argv, definition.options);
      if (parsed.help) {
        context.stdout.write(`Usage: kib ${definition.usage}\n\n${definition.summary}\n\n${definition.help}\n`);
        return 0;
      }
      return definition.action(parsed, context);
    },
  };
}

