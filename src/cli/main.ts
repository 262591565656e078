import { CancelledError, ConfigError, KibError, UsageError, isCancelled } from '../core/errors.js';
import { killAllDaemonsSync } from '../process/index.js';
import { COMMANDS, type CommandContext } from './commands.js';
import { renderError } from './render-error.js';
import { toolVersion } from './version.js';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_INTERRUPTED = 130;

export function renderHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.usage.length));
  return [
    'kib — build a Kubernetes node image (Rocky Linux 9, one pinned Kubernetes version) for KubeVirt and Cluster API',
    '',
    'Usage: kib <command> [options]',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.usage.padEnd(width)}  ${c.summary}`),
    '',
    'Global options:',
    '  --log-format human|json  progress on stderr as text (default) or JSON lines',
    '  --json                   machine-readable result on stdout (plan, fetch, build, verify, push)',
    '  -v, --verbose            show child-process output (QEMU, Ansible) as it happens',
    '  --debug                  show stack traces',
    '  -h, --help               help for kib or a command',
    '  --version                print the version',
    '',
    'Exit codes: 0 ok, 1 failed, 2 usage or configuration error, 130 interrupted.',
    'Run `kib <command> --help` for a command\'s options.',
  ].join('\n');
}

/**
 * Runs one kib command and returns its exit code. Owns signals: the first Ctrl-C (or SIGTERM)
 * cancels the running command, which stops its VM and removes temporary files; a second one
 * kills every child process group at once and exits 130.
 */
export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${renderHelp()}\n`);
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (name === '--version') {
    process.stdout.write(`${toolVersion()}\n`);
    return EXIT_OK;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (command === undefined) {
    process.stderr.write(`kib: unknown command "${name}"\n\n${renderHelp()}\n`);
    return EXIT_USAGE;
  }

  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    interrupts += 1;
    if (interrupts === 1) {
      process.stderr.write(`\nkib: ${signal} received — stopping the VM and cleaning up (press Ctrl-C again to exit at once)\n`);
      controller.abort(new CancelledError('kib'));
    } else {
      killAllDaemonsSync();
      process.stderr.write('kib: interrupted again — killed child processes, exiting\n');
      process.exit(EXIT_INTERRUPTED);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const context: CommandContext = { signal: controller.signal, stdout: process.stdout, stderr: process.stderr, cwd: process.cwd(), env: process.env };
  const debug = rest.includes('--debug');
  try {
    return await command.run(rest, context);
  } catch (error) {
    if (controller.signal.aborted && (isCancelled(error) || interrupts > 0)) {
      process.stderr.write('kib: interrupted; the cache and the output directory are as they were\n');
      return EXIT_INTERRUPTED;
    }
    process.stderr.write(`${renderError(error, debug)}\n`);
    if (error instanceof UsageError || error instanceof ConfigError) return EXIT_USAGE;
    if (error instanceof KibError && error.code === 'CONFIG_INVALID') return EXIT_USAGE;
    return EXIT_FAILED;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
