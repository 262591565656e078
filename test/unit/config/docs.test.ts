import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as z from 'zod';
import { CONFIGURATION_DOC_PATH, renderConfigurationDoc } from '../../../src/config/docs.js';
import { imageConfigSchema } from '../../../src/config/schema.js';

const REPO_ROOT = resolve(import.meta.dirname, '../../..');

interface Node {
  description?: string;
  properties?: Record<string, Node>;
}

function fieldsWithoutDescription(node: Node, path: string[]): string[] {
  const missing: string[] = [];
  for (const [key, child] of Object.entries(node.properties ?? {})) {
    const childPath = [...path, key];
    if (child.description === undefined || child.description.trim() === '') missing.push(childPath.join('.'));
    missing.push(...fieldsWithoutDescription(child, childPath));
  }
  return missing;
}

describe('docs/configuration.md', () => {
  it('is up to date with the schema', async () => {
    const committed = await readFile(join(REPO_ROOT, CONFIGURATION_DOC_PATH), 'utf8').catch(() => '');
    expect(committed === renderConfigurationDoc(), `${CONFIGURATION_DOC_PATH} is stale: run \`npm run docs:config\` and commit the result`).toBe(true);
  });

  it('documents every field', () => {
    const schema = z.toJSONSchema(imageConfigSchema, { io: 'input', unrepresentable: 'any' }) as Node;
    expect(fieldsWithoutDescription(schema, [])).toEqual([]);
    const doc = renderConfigurationDoc();
    for (const field of ['`name`', '`base.url`', '`base.sha256`', '`kubernetes.version`', '`disk.size`', '`vm.bootTimeout`', '`outputs.formats`']) {
      expect(doc).toContain(`| ${field} |`);
    }
  });

  it('shows defaults and marks required fields', () => {
    const doc = renderConfigurationDoc();
    expect(doc).toContain('| `disk.size` | size | `20G` |');
    expect(doc).toContain('| `kubernetes.version` | version | *required* (or `series`) |');
    expect(doc).toContain('| `outputs.formats` | list of `qcow2`, `raw`, `containerdisk` | `[qcow2, containerdisk]` |');
    expect(doc).toContain('| `base.osFamily` | `redhat` \\| `debian` | `redhat` |');
  });
});
