import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { MissingToolError } from '../core/errors.js';

export interface ToolNeed {
  command: string;
  /** Completes "needed to …": "export qcow2", "build the seed ISO". */
  purpose: string;
  /** The Debian/Ubuntu package that provides it. */
  packageName: string;
}

/** The absolute path of an executable on PATH (or the given path), or undefined. */
export function findTool(name: string, searchPath: string = process.env.PATH ?? ''): string | undefined {
  if (name.includes('/')) {
    const path = isAbsolute(name) ? name : resolve(name);
    return isExecutableFile(path) ? path : undefined;
  }
  for (const dir of searchPath.split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

/**
 * Checks all needed host tools at once, before anything slow starts, and reports every missing one
 * together. Returns the resolved paths by command name.
 */
export function checkTools(needs: readonly ToolNeed[], searchPath?: string): Map<string, string> {
  const found = new Map<string, string>();
  const missing: ToolNeed[] = [];
  for (const need of needs) {
    if (found.has(need.command)) continue;
    const path = findTool(need.command, searchPath);
    if (path === undefined) {
      if (!missing.some((m) => m.command === need.command)) missing.push(need);
    } else {
      found.set(need.command, path);
    }
  }
  if (missing.length > 0) throw new MissingToolError(missing);
  return found;
}

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
