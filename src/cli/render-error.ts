import { KibError } from '../core/errors.js';

/** `error: <message>` and `hint: <what to do>`; the stack and causes only with --debug. */
export function renderError(error: unknown, debug: boolean): string {
  const lines: string[] = [];
  if (error instanceof KibError) {
    lines.push(`error: ${error.message}`);
    if (error.hint !== undefined) lines.push(`hint: ${error.hint}`);
  } else if (error instanceof Error) {
    lines.push(`error: ${error.message}`);
  } else {
    lines.push(`error: ${String(error)}`);
  }
  if (debug) {
    let current: unknown = error;
    while (current instanceof Error) {
      lines.push(current.stack ?? String(current));
      current = current.cause;
      if (current !== undefined) lines.push('caused by:');
    }
  } else if (!(error instanceof KibError)) {
    lines.push('(run with --debug for the stack trace)');
  }
  return lines.join('\n');
}
