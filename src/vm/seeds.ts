import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MissingToolError } from '../core/errors.js';
import { findTool, run } from '../process/index.js';

export interface NoCloudSeedSpec {
  /** Where the ISO (and its source tree) is written. */
  dir: string;
  /** `#cloud-config` YAML (or any user-data cloud-init accepts). */
  userData: string;
  /** YAML text, or an object (written as JSON, which is YAML too): instance-id, local-hostname. */
  metaData: string | Readonly<Record<string, unknown>>;
  /** cloud-init network-config (v1 or v2) as YAML text or an object. */
  networkConfig?: string | Readonly<Record<string, unknown>>;
  signal?: AbortSignal;
}

export interface ConfigDriveSeedSpec {
  dir: string;
  userData: string;
  /** Becomes openstack/latest/meta_data.json (uuid, hostname, public_keys, …). */
  metaData: Readonly<Record<string, unknown>>;
  /** Becomes openstack/latest/network_data.json (OpenStack format). */
  networkData?: Readonly<Record<string, unknown>>;
  signal?: AbortSignal;
}

export type IsoTool = 'xorriso' | 'genisoimage';

/** Volume labels cloud-init looks for. */
export const NOCLOUD_LABEL = 'cidata';
export const CONFIG_DRIVE_LABEL = 'config-2';

/** argv for an ISO 9660 image with Joliet and Rock Ridge names, as KubeVirt writes its seeds. */
export function isoArgs(tool: IsoTool, options: { outputPath: string; volumeId: string; sourceDir: string }): string[] {
  const common = ['-quiet', '-output', options.outputPath, '-volid', options.volumeId, '-joliet', '-rock', options.sourceDir];
  return tool === 'xorriso' ? ['-as', 'mkisofs', ...common] : common;
}

/** A NoCloud seed: an ISO labelled `cidata` with user-data, meta-data (and network-config) at its root. */
export async function createNoCloudSeed(spec: NoCloudSeedSpec): Promise<string> {
  const files: Record<string, string> = {
    'user-data': spec.userData,
    'meta-data': asYamlText(spec.metaData),
  };
  if (spec.networkConfig !== undefined) files['network-config'] = asYamlText(spec.networkConfig);
  return await writeSeedIso(spec.dir, NOCLOUD_LABEL, files, spec.signal);
}

/** A ConfigDrive seed: an ISO labelled `config-2` with the OpenStack `latest` metadata tree. */
export async function createConfigDriveSeed(spec: ConfigDriveSeedSpec): Promise<string> {
  const files: Record<string, string> = {
    'openstack/latest/meta_data.json': `${JSON.stringify(spec.metaData, null, 2)}\n`,
    'openstack/latest/user_data': spec.userData,
  };
  if (spec.networkData !== undefined) {
    files['openstack/latest/network_data.json'] = `${JSON.stringify(spec.networkData, null, 2)}\n`;
  }
  return await writeSeedIso(spec.dir, CONFIG_DRIVE_LABEL, files, spec.signal);
}

async function writeSeedIso(
  dir: string,
  label: string,
  files: Readonly<Record<string, string>>,
  signal: AbortSignal | undefined,
): Promise<string> {
  const tool = pickIsoTool();
  const sourceDir = join(dir, `${label}.d`);
  const outputPath = join(dir, `${label}.iso`);
  await rm(sourceDir, { recursive: true, force: true });
  await rm(outputPath, { force: true });
  for (const [relativePath, content] of Object.entries(files)) {
    const path = join(sourceDir, relativePath);
    await mkdir(join(path, '..'), { recursive: true });
    await writeFile(path, content);
  }
  await run(tool, isoArgs(tool, { outputPath, volumeId: label, sourceDir }), {
    timeoutMs: 60_000,
    ...(signal === undefined ? {} : { signal }),
  });
  return outputPath;
}

function pickIsoTool(): IsoTool {
  if (findTool('xorriso') !== undefined) return 'xorriso';
  if (findTool('genisoimage') !== undefined) return 'genisoimage';
  throw new MissingToolError([{ command: 'xorriso', purpose: 'write the cloud-init seed ISO', packageName: 'xorriso' }]);
}

function asYamlText(value: string | Readonly<Record<string, unknown>>): string {
  return typeof value === 'string' ? value : `${JSON.stringify(value, null, 2)}\n`;
}
