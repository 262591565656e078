import { createWriteStream, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import type { Reporter } from '../report/events.js';
import { createHumanReporter, createJsonLinesReporter } from '../report/renderers.js';
import type { GlobalOptions } from './args.js';

/** The screen reporter (stderr), plus an events.jsonl file once a build directory exists. */
export class CliReporter implements Reporter {
  readonly #screen: Reporter;
  #file: WriteStream | undefined;
  #fileReporter: Reporter | undefined;

  constructor(globals: GlobalOptions, stderr: NodeJS.WriteStream) {
    this.#screen = globals.logFormat === 'json' ? createJsonLinesReporter(stderr) : createHumanReporter(stderr, { verbose: globals.verbose });
  }

  attachLogDir(logDir: string): void {
    this.#file = createWriteStream(join(logDir, 'events.jsonl'), { flags: 'a' });
    this.#fileReporter = createJsonLinesReporter(this.#file);
  }

  emit(event: Parameters<Reporter['emit']>[0]): void {
    this.#screen.emit(event);
    this.#fileReporter?.emit(event);
  }

  async close(): Promise<void> {
    const file = this.#file;
    if (file === undefined) return;
    await new Promise<void>((resolve) => file.end(resolve));
  }
}
