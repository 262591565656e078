import type { WriteStream } from 'node:tty';
import type { KibEvent, Phase, Reporter } from './events.js';

type Writable = Pick<NodeJS.WritableStream, 'write'> & { isTTY?: boolean; columns?: number };

/** json-lines: one event per line, with a timestamp; for CI (`--log-format json`). */
export function createJsonLinesReporter(out: Writable): Reporter {
  return {
    emit(event) {
      out.write(`${JSON.stringify({ time: new Date().toISOString(), ...event })}\n`);
    },
  };
}

/** Keeps every event; tests assert on what the library emitted. */
export class RecordingReporter implements Reporter {
  readonly events: KibEvent[] = [];

  emit(event: KibEvent): void {
    this.events.push(event);
  }

  ofType<T extends KibEvent['type']>(type: T): Extract<KibEvent, { type: T }>[] {
    return this.events.filter((e): e is Extract<KibEvent, { type: T }> => e.type === type);
  }
}

/** Sends every event to several reporters (the screen and the build's events.jsonl). */
export function teeReporter(...reporters: Reporter[]): Reporter {
  return {
    emit(event) {
      for (const reporter of reporters) reporter.emit(event);
    },
  };
}

export interface HumanReporterOptions {
  /** Show child-process log lines (Ansible tasks are always summarised). */
  verbose: boolean;
  /** Current time source, injectable for tests. */
  now?: () => number;
}

/**
 * Human progress on stderr: a line per phase with its duration, the current step, Ansible task
 * names, and a progress bar redrawn in place on a TTY (plain percentage lines otherwise, at most
 * one per 10 %).
 */
export function createHumanReporter(out: Writable, options: HumanReporterOptions): Reporter {
  const tty = out.isTTY === true;
  let liveLine = false;
  let lastPercent = new Map<string, number>();

  const clearLive = (): void => {
    if (liveLine) {
      out.write('\r\x1b[2K');
      liveLine = false;
    }
  };
  const line = (text: string): void => {
    clearLive();
    out.write(`${text}\n`);
  };

  return {
    emit(event) {
      switch (event.type) {
        case 'phase-start':
          lastPercent = new Map();
          line(`==> ${event.phase}: ${event.title}`);
          break;
        case 'phase-end':
          line(`<== ${event.phase} ${event.ok ? 'done' : 'failed'} in ${formatDuration(event.durationMs)}`);
          break;
        case 'step':
          line(`    ${event.message}`);
          break;
        case 'progress': {
          const text = renderProgress(event);
          if (tty) {
            clearLive();
            const width = (out as WriteStream).columns ?? 100;
            out.write(text.slice(0, Math.max(10, width - 1)));
            liveLine = true;
          } else if (event.total !== undefined && event.total > 0) {
            const percent = Math.floor((event.done / event.total) * 10) * 10;
            if (percent !== lastPercent.get(event.label)) {
              lastPercent.set(event.label, percent);
              line(text);
            }
          }
          break;
        }
        case 'log':
          if (event.source === 'ansible' && /^TASK \[/.test(event.line)) {
            line(`    ${event.line.replace(/\s*\*+$/, '')}`);
          } else if (options.verbose || event.level === 'warn') {
            line(`    [${event.source}] ${event.line}`);
          }
          break;
        case 'warning':
          line(`warning: ${event.message}`);
          break;
        case 'artifact':
          line(`    artifact ${event.path} (${formatBytes(event.sizeBytes)}, sha256 ${event.sha256.slice(0, 16)}…)`);
          break;
        case 'stage-start':
          line(event.hit ? `    stage ${event.stage}: layer ${event.key.slice(0, 12)} from the cache` : `    stage ${event.stage}: running (key ${event.key.slice(0, 12)})`);
          break;
        case 'stage-end':
          if (event.durationMs > 0) line(`    stage ${event.stage} done in ${formatDuration(event.durationMs)}${event.layer === null ? '' : `, stored as layer ${event.layer.slice(0, 12)}`}`);
          break;
        case 'check':
          line(`${event.status.toUpperCase().padEnd(5)} ${event.name}${event.detail === '' ? '' : `  ${event.detail}`}`);
          break;
      }
    },
  };
}

function renderProgress(event: Extract<KibEvent, { type: 'progress' }>): string {
  const done = event.unit === 'bytes' ? formatBytes(event.done) : String(event.done);
  if (event.total === undefined || event.total <= 0) return `    ${event.label}: ${done}`;
  const fraction = Math.min(1, event.done / event.total);
  const barWidth = 24;
  const filled = Math.round(fraction * barWidth);
  const total = event.unit === 'bytes' ? formatBytes(event.total) : String(event.total);
  return `    ${event.label} [${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ${done}/${total}`;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${Math.round(seconds - minutes * 60)} s`;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`;
}

/** Times a phase and emits its start and end, also when it fails. */
export async function timePhase<T>(reporter: Reporter, phase: Phase, title: string, body: () => Promise<T>): Promise<{ value: T; durationMs: number }> {
  const started = performance.now();
  reporter.emit({ type: 'phase-start', phase, title });
  try {
    const value = await body();
    const durationMs = performance.now() - started;
    reporter.emit({ type: 'phase-end', phase, durationMs, ok: true });
    return { value, durationMs };
  } catch (error) {
    reporter.emit({ type: 'phase-end', phase, durationMs: performance.now() - started, ok: false });
    throw error;
  }
}
