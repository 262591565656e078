import { dirname } from 'node:path';
import { buildImage } from '../pipeline/build.js';
import { cacheDir, stateDir } from '../pipeline/dirs.js';
import { layerStoreFor } from './cmd-cache.js';
import { formatBytes, formatDuration } from '../report/renderers.js';
import { defineCommand } from './define.js';
import { toolVersion } from './version.js';
import { CliReporter } from './reporting.js';
import { resolveSpec, SPEC_HELP, SPEC_OPTIONS } from './spec.js';

export const buildCommand = defineCommand({
  name: 'build',
  usage: 'build [--config FILE] [--base PATH|URL] [--output DIR] [--force]',
  summary: 'Build the image: fetch the base, provision it with the playbook, seal it, export the artifacts.',
  help: [
    SPEC_HELP,
    '',
    'Progress goes to stderr; the output directory and artifacts to stdout (--json for JSON).',
    'Logs (events.jsonl, console.log, ansible.log) are kept in a per-build directory that errors name.',
    '',
    'Stages whose layer is in the cache (kib cache ls) are not run again; the build starts from the',
    'last one. When every key is unchanged and the output directory already holds the artifacts,',
    'the build says so and does nothing.',
    '  --force                 build and export even when the artifacts are up to date',
    '',
    'The build date written into the image is SOURCE_DATE_EPOCH when set, else the commit date of',
    'the build definition\'s Git repository when its tracked files are unchanged, else now.',
  ].join('\n'),
  options: { ...SPEC_OPTIONS, force: { type: 'boolean' } },
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
          layers: layerStoreFor(context.env),
          force: parsed.values.force === true,
          onBuildId: (_id, logDir) => {
            logDirSeen = logDir;
            reporter.attachLogDir(logDir);
          },
        });
        if (parsed.globals.json) {
          context.stdout.write(
            `${JSON.stringify({ outputDir: result.outputDir, logDir: result.logDir, upToDate: result.upToDate, exportKey: result.exportKey, artifacts: result.artifacts, phasesMs: result.phasesMs }, null, 2)}\n`,
          );
        } else {
          const total = Object.values(result.phasesMs).reduce((a, b) => a + b, 0);
          context.stdout.write(`${result.outputDir}\n`);
          for (const artifact of result.artifacts) context.stdout.write(`  ${artifact.sha256}  ${formatBytes(artifact.sizeBytes).padStart(10)}  ${artifact.path}\n`);
          context.stderr.write(result.upToDate ? `up to date, nothing built (checked in ${formatDuration(total)}; --force rebuilds)\n` : `built in ${formatDuration(total)}; logs: ${result.logDir}\n`);
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
