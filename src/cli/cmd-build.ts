import { dirname } from 'node:path';
import { buildImage } from '../pipeline/build.js';
import { cacheDir, stateDir } from '../pipeline/dirs.js';
import { formatBytes, formatDuration } from '../report/renderers.js';
import { defineCommand } from './define.js';
import { toolVersion } from './version.js';
import { CliReporter } from './reporting.js';
import { resolveSpec, SPEC_HELP, SPEC_OPTIONS } from './spec.js';

export const buildCommand = defineCommand({
  name: 'build',
  usage: 'build [--config FILE] [--base PATH|URL] [--output DIR]',
  summary: 'Build the image: fetch the base, provision it with the playbook, seal it, export the artifacts.',
  help: [
    SPEC_HELP,
    '',
    'Progress goes to stderr; the output directory and artifacts to stdout (--json for JSON).',
    'Logs (events.jsonl, console.log, ansible.log) are kept in a per-build directory that errors name.',
  ].join('\n'),
  options: SPEC_OPTIONS,
  async action(parsed, context) {
    const reporter = new CliReporter(parsed.globals, context.stderr);
    try {
      const { spec } = await resolveSpec(parsed, context, reporter);
      let logDirSeen: string | undefined;
      try {
        const result = await buildImage(spec, {
          cacheDir: cacheDir(context.env),
          stateDir: stateDir(context.env),
          repoDir: spec.configPath === undefined ? context.cwd : dirname(spec.configPath),
          toolVersion: toolVersion(),
          signal: context.signal,
          reporter,
          onBuildId: (_id, logDir) => {
            logDirSeen = logDir;
            reporter.attachLogDir(logDir);
          },
        });
        if (parsed.globals.json) {
          context.stdout.write(`${JSON.stringify({ outputDir: result.outputDir, logDir: result.logDir, artifacts: result.artifacts, phasesMs: result.phasesMs }, null, 2)}\n`);
        } else {
          const total = Object.values(result.phasesMs).reduce((a, b) => a + b, 0);
          context.stdout.write(`${result.outputDir}\n`);
          for (const artifact of result.artifacts) context.stdout.write(`  ${artifact.sha256}  ${formatBytes(artifact.sizeBytes).padStart(10)}  ${artifact.path}\n`);
          context.stderr.write(`built in ${formatDuration(total)}; logs: ${result.logDir}\n`);
        }
        return 0;
      } catch (error) {
        if (logDirSeen !== undefined && !context.signal.aborted) context.stderr.write(`logs of this build: ${logDirSeen}\n`);
        throw error;
      }
    } finally {
      await reporter.close();
    }
  },
});
