import { isMap, isScalar, type Document, type LineCounter, type Node as YamlNode, type Pair } from 'yaml';
import type * as z from 'zod';
import type { ConfigIssue } from '../core/errors.js';
import { describeInput } from './schema.js';

/**
 * Turns schema issues into `ConfigIssue`s with dotted paths (`disk.size`) and messages that say
 * what was expected and what was found. Where the YAML document is known, the message ends with
 * the line it came from.
 */
export function issuesFromZod(
  issues: readonly z.core.$ZodIssue[],
  input: unknown,
  schema: z.core.$ZodType,
  source?: { doc: Document; lineCounter: LineCounter },
): ConfigIssue[] {
  const result: ConfigIssue[] = [];
  for (const issue of issues) {
    const path = issue.path.filter((part): part is string | number => typeof part !== 'symbol');
    if (issue.code === 'unrecognized_keys') {
      const known = objectKeysAt(schema, path);
      for (const key of issue.keys) {
        const keyPath = [...path, key];
        const suggestion = closest(key, known);
        const message = `unknown key${suggestion === undefined ? '' : ` (did you mean "${suggestion}"?)`}${known.length > 0 ? `; expected one of: ${known.join(', ')}` : ''}`;
        result.push({ path: renderPath(keyPath), message: withLine(message, keyPath, source, true) });
      }
      continue;
    }
    const value = valueAt(input, path);
    const message = messageFor(issue, value);
    // A missing top-level field has no line worth pointing at; a missing nested one has its section's.
    const located = value === undefined && path.length <= 1 ? message : withLine(message, path, source, false);
    result.push({ path: renderPath(path), message: located });
  }
  return result;
}

export function renderPath(path: readonly (string | number)[]): string {
  let text = '';
  for (const part of path) {
    if (typeof part === 'number') text += `[${String(part)}]`;
    else text += text === '' ? part : `.${part}`;
  }
  return text;
}

function messageFor(issue: z.core.$ZodIssue, value: unknown): string {
  switch (issue.code) {
    case 'custom':
      return issue.message;
    case 'invalid_type':
      if (value === undefined) return 'required';
      return `expected ${expectedWord(issue.expected)}, got ${describeInput(value)}`;
    case 'invalid_value':
      return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}, got ${describeInput(value)}`;
    case 'too_small':
      if (issue.origin === 'string') return 'must not be empty';
      return `must be at least ${String(issue.minimum)}, got ${describeInput(value)}`;
    case 'too_big':
      return `must be at most ${String(issue.maximum)}, got ${describeInput(value)}`;
    default:
      return issue.message;
  }
}

function expectedWord(expected: string): string {
  switch (expected) {
    case 'string':
      return 'a string';
    case 'number':
      return 'a number';
    case 'int':
      return 'a whole number';
    case 'boolean':
      return 'true or false';
    case 'object':
    case 'record':
      return 'a mapping';
    case 'array':
      return 'a list';
    default:
      return expected;
  }
}

function valueAt(input: unknown, path: readonly (string | number)[]): unknown {
  let current = input;
  for (const part of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string | number, unknown>)[part];
  }
  return current;
}

/** The keys the object schema at `path` accepts (wrappers such as defaults are looked through). */
export function objectKeysAt(schema: z.core.$ZodType, path: readonly (string | number)[]): string[] {
  let current: z.core.$ZodType | undefined = unwrap(schema);
  for (const part of path) {
    if (current === undefined || typeof part === 'number') return [];
    const def = current._zod.def as { type: string; shape?: Record<string, z.core.$ZodType> };
    current = def.type === 'object' && def.shape !== undefined ? unwrap(def.shape[part]) : undefined;
  }
  const def = current?._zod.def as { type: string; shape?: Record<string, unknown> } | undefined;
  return def?.type === 'object' && def.shape !== undefined ? Object.keys(def.shape) : [];
}

function unwrap(schema: z.core.$ZodType | undefined): z.core.$ZodType | undefined {
  let current = schema;
  for (let guard = 0; current !== undefined && guard < 20; guard += 1) {
    const def = current._zod.def as { type: string; innerType?: z.core.$ZodType; in?: z.core.$ZodType };
    if (def.innerType !== undefined && ['default', 'prefault', 'optional', 'nullable', 'readonly', 'catch'].includes(def.type)) current = def.innerType;
    else if (def.type === 'pipe' && def.in !== undefined) current = def.in;
    else return current;
  }
  return current;
}

function withLine(
  message: string,
  path: readonly (string | number)[],
  source: { doc: Document; lineCounter: LineCounter } | undefined,
  isKey: boolean,
): string {
  if (source === undefined) return message;
  const line = lineOf(source.doc, source.lineCounter, path, isKey);
  return line === undefined ? message : `${message} (line ${String(line)})`;
}

/** Line of the deepest node on the path that exists in the document. */
function lineOf(doc: Document, lineCounter: LineCounter, path: readonly (string | number)[], isKey: boolean): number | undefined {
  for (let depth = path.length; depth >= 0; depth -= 1) {
    const prefix = path.slice(0, depth);
    let node: YamlNode | Pair | null | undefined;
    if (isKey && depth === path.length && depth > 0) {
      const parent = prefix.length === 1 ? doc.contents : doc.getIn(prefix.slice(0, -1), true);
      if (isMap(parent)) node = parent.items.find((pair) => isScalar(pair.key) && pair.key.value === prefix[prefix.length - 1]);
      const key = node === undefined ? undefined : (node as Pair).key;
      const range = key !== null && typeof key === 'object' && 'range' in key ? (key as YamlNode).range : undefined;
      if (range !== undefined && range !== null) return lineCounter.linePos(range[0]).line;
      continue;
    }
    node = depth === 0 ? doc.contents : (doc.getIn(prefix, true) as YamlNode | undefined);
    const range = node !== null && node !== undefined && 'range' in node ? node.range : undefined;
    if (range !== undefined && range !== null) return lineCounter.linePos(range[0]).line;
  }
  return undefined;
}

/** The known key closest to a misspelt one, if it is close enough to be a likely typo. */
function closest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of known) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i += 1) {
    const current = [i];
    for (let j = 1; j <= b.length; j += 1) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
