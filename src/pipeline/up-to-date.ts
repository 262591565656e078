import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { parseBuildManifest } from '../core/build-facts.js';
import type { Artifact } from '../core/types.js';
import { MANIFEST_FILE, SHA256SUMS_FILE, sha256Text } from '../export/index.js';

/**
 * Beside the artifacts: the export key they were made under (src/pipeline/plan.ts, step `export`,
 * which chains every stage key), so a later build of the same inputs finds them and does nothing.
 * Not an artifact: SHA256SUMS and the manifest do not list it.
 */
export const BUILD_KEY_FILE = 'build-key.json';

const buildKeyRecordSchema = z.strictObject({
  kind: z.literal('kib.build-key'),
  schema: z.literal(1),
  exportKey: z.string().regex(/^[0-9a-f]{64}$/),
  /** Step (`provision.os` …) → key, for people reading the directory. */
  keys: z.record(z.string(), z.string()),
});

export type BuildKeyRecord = z.infer<typeof buildKeyRecordSchema>;

export async function writeBuildKeyRecord(dir: string, record: Omit<BuildKeyRecord, 'kind' | 'schema'>): Promise<void> {
  const full: BuildKeyRecord = { kind: 'kib.build-key', schema: 1, ...record };
  await writeFile(join(dir, BUILD_KEY_FILE), `${JSON.stringify(full, null, 2)}\n`);
}

export type UpToDateCheck = { status: 'up-to-date'; artifacts: Artifact[] } | { status: 'stale'; reason: string };

/**
 * Whether `dir` already holds the artifacts of the build whose export key is `exportKey`: its
 * build-key.json names that key, manifest.json parses, and every artifact the manifest lists is
 * there with its recorded size, as are SHA256SUMS and the manifest. Contents are not rehashed here
 * (that would take longer than the no-op is meant to); `sha256sum -c SHA256SUMS` and `kib verify`
 * check them.
 */
export async function checkUpToDate(dir: string, exportKey: string): Promise<UpToDateCheck> {
  let record: BuildKeyRecord;
  try {
    const parsed = buildKeyRecordSchema.safeParse(JSON.parse(await readFile(join(dir, BUILD_KEY_FILE), 'utf8')));
    if (!parsed.success) return { status: 'stale', reason: `${BUILD_KEY_FILE} in ${dir} is not a build key record` };
    record = parsed.data;
  } catch {
    return { status: 'stale', reason: `no ${BUILD_KEY_FILE} in ${dir}` };
  }
  if (record.exportKey !== exportKey) return { status: 'stale', reason: `${dir} holds the artifacts of export key ${record.exportKey.slice(0, 12)}, not ${exportKey.slice(0, 12)}` };
  let manifestText: string;
  let manifest;
  try {
    manifestText = await readFile(join(dir, MANIFEST_FILE), 'utf8');
    manifest = parseBuildManifest(manifestText);
  } catch (error) {
    return { status: 'stale', reason: `${MANIFEST_FILE} in ${dir} cannot be read: ${(error as Error).message}` };
  }
  const artifacts: Artifact[] = [];
  for (const entry of manifest.artifacts) {
    const path = join(dir, entry.file);
    const size = await stat(path).then((s) => s.size).catch(() => undefined);
    if (size !== entry.sizeBytes) return { status: 'stale', reason: size === undefined ? `${path} is missing` : `${path} has ${size} bytes, the manifest says ${entry.sizeBytes}` };
    artifacts.push({ path, kind: entry.kind, sha256: entry.sha256, sizeBytes: entry.sizeBytes });
  }
  artifacts.push({ path: join(dir, MANIFEST_FILE), kind: 'manifest', sha256: sha256Text(manifestText), sizeBytes: Buffer.byteLength(manifestText) });
  const sumsText = await readFile(join(dir, SHA256SUMS_FILE), 'utf8').catch(() => undefined);
  if (sumsText === undefined) return { status: 'stale', reason: `${join(dir, SHA256SUMS_FILE)} is missing` };
  artifacts.push({ path: join(dir, SHA256SUMS_FILE), kind: 'sha256sums', sha256: sha256Text(sumsText), sizeBytes: Buffer.byteLength(sumsText) });
  return { status: 'up-to-date', artifacts };
}
